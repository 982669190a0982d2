"""metalab: reproducible experiments, ``(FrozenContext, Params, SeedBundle) -> RunRecord``.

Define an operation once, sweep its parameters, control every random number, and get
back a table; interrupted sweeps resume and identical runs never run twice.  Heavy
dependencies (pandas, pyarrow, dask) load on first use, so ``import metalab`` is quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .capture import Capture
from .capture.serializers import register_serializer
from .context import FrozenContext, context_spec
from .errors import (
    ArtifactIntegrityError,
    CaptureError,
    ContextError,
    ExecutorError,
    ExperimentError,
    FrozenContextError,
    MetalabError,
    OperationSignatureError,
    ParamError,
    ParamSpaceError,
    ResultsError,
    RunInterrupted,
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
from .provenance import SourceChangedWarning, acknowledge_source
from .seeds import SeedBundle, SeedPlan, seeds

if TYPE_CHECKING:
    from .results import Results, Run

__version__ = "0.1.0"

__all__ = [
    "ArtifactIntegrityError",
    "Capture",
    "CaptureError",
    "ContextError",
    "DaskExecutor",
    "Executor",
    "ExecutorError",
    "Experiment",
    "ExperimentError",
    "FrozenContext",
    "FrozenContextError",
    "LocalExecutor",
    "MetalabError",
    "Operation",
    "OperationSignatureError",
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
    "randint",
    "random",
    "register_serializer",
    "run",
    "seeds",
    "uniform",
]


def run(experiment: Experiment, **kwargs: Any) -> Results:
    """Run an experiment; see :func:`metalab.sweep.run` for every option."""
    from .sweep.sweep import run as _run

    return _run(experiment, **kwargs)


def load_results(path: Any) -> Results:
    """Open the results of a store (or a list of stores).

    See :func:`metalab.results.load_results`.
    """
    from .results.results import load_results as _load

    return _load(path)


def __getattr__(name: str) -> Any:
    if name in ("Results", "Run"):
        from .results import results

        return getattr(results, name)
    raise AttributeError(f"module 'metalab' has no attribute {name!r}")
