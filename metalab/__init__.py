"""metalab: reproducible experiments, ``(FrozenContext, Params, SeedBundle) -> RunRecord``.

Define an operation once, sweep its parameters, control every random number, and get
back a table; interrupted sweeps resume and identical runs never run twice.

``import metalab`` is quick: :func:`run`, :func:`load_results`, :class:`Results` and
:class:`Run` live in modules that need pandas, pyarrow and dask, so they are imported on
first use (module ``__getattr__``).  What you get is the real object, with its real
signature; type checkers see it through the ``TYPE_CHECKING`` imports below.
"""

import typing as _typing

from .capture import Capture
from .capture.serializers import register_serializer
from .context import FrozenContext, context_spec
from .errors import (
    ArtifactIntegrityError,
    CaptureError,
    CaptureTypeError,
    CLIError,
    ContextError,
    DamagedFileWarning,
    ExecutorConfigError,
    ExecutorError,
    ExperimentError,
    FrozenContextError,
    FrozenExperimentError,
    MetalabError,
    MetalabWarning,
    OperationSignatureError,
    OtherDefinitionsWarning,
    ParamError,
    ParamSpaceError,
    ResultsError,
    RunInterrupted,
    SeedError,
    SourceChangedWarning,
    StoreError,
    UnsafePickleError,
    UnsupportedArtifactError,
)
from .executors import (
    DaskExecutor,
    Executor,
    LocalExecutor,
    PBSExecutor,
    ProcessExecutor,
    SlurmExecutor,
    ThreadExecutor,
)
from .experiment import Experiment
from .operation import Operation, operation
from .params import (
    ParamSource,
    choice,
    grid,
    loguniform,
    manual,
    normal,
    randint,
    random,
    uniform,
)
from .provenance import acknowledge_source
from .search.source import optimize
from .seeds import SeedBundle, SeedPlan, seeds

if _typing.TYPE_CHECKING:
    from .results.results import Results, Run, load_results
    from .sweep.sweep import run

    __version__: str

__all__ = [
    "ArtifactIntegrityError",
    "CLIError",
    "Capture",
    "CaptureError",
    "CaptureTypeError",
    "ContextError",
    "DamagedFileWarning",
    "DaskExecutor",
    "Executor",
    "ExecutorConfigError",
    "ExecutorError",
    "Experiment",
    "ExperimentError",
    "FrozenContext",
    "FrozenContextError",
    "FrozenExperimentError",
    "LocalExecutor",
    "MetalabError",
    "MetalabWarning",
    "Operation",
    "OperationSignatureError",
    "OtherDefinitionsWarning",
    "PBSExecutor",
    "ParamError",
    "ParamSource",
    "ParamSpaceError",
    "ProcessExecutor",
    "Results",
    "ResultsError",
    "Run",
    "RunInterrupted",
    "SeedBundle",
    "SeedError",
    "SeedPlan",
    "SlurmExecutor",
    "SourceChangedWarning",
    "StoreError",
    "ThreadExecutor",
    "UnsafePickleError",
    "UnsupportedArtifactError",
    "__version__",
    "acknowledge_source",
    "choice",
    "context_spec",
    "grid",
    "load_results",
    "loguniform",
    "manual",
    "normal",
    "operation",
    "optimize",
    "randint",
    "random",
    "register_serializer",
    "run",
    "seeds",
    "uniform",
]


#: Public names whose modules import pandas, pyarrow or dask: imported on first use.
_LAZY = {
    "Results": "metalab.results.results",
    "Run": "metalab.results.results",
    "load_results": "metalab.results.results",
    "run": "metalab.sweep.sweep",
}


def _version() -> str:
    # The version is written once, in pyproject.toml; installed metadata carries it.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("metalab")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        return "0+unknown"


def __getattr__(name: str) -> _typing.Any:
    if name == "__version__":
        value: _typing.Any = _version()
    elif name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'metalab' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, "__version__"})
