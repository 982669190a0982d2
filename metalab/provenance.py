"""Provenance: where and with what code and environment a sweep ran.

Recorded once per store (``manifest.json``, when the store is created) and once per
sweep (``sweeps/<sweep>.json``); each run record adds its host, pid, worker address,
start and end times and duration.  :func:`check_source_changed` warns when an
operation's code changed but its ``version=`` did not.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SourceChangedWarning  # defined with the other warnings; importable here

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .operation import Operation
    from .store import Store

__all__ = [
    "KEY_PACKAGES",
    "Collector",
    "SourceChangedWarning",
    "check_source_changed",
    "collect",
    "environment",
    "git_info",
]

#: Packages whose versions every provenance record lists (when installed).
KEY_PACKAGES = (
    "numpy",
    "pandas",
    "pyarrow",
    "dask",
    "distributed",
    "cloudpickle",
    "matplotlib",
    "dask-jobqueue",
    "scipy",
    "scikit-learn",
    "torch",
    "jax",
)
_GIT_TIMEOUT_S = 10.0


#: Always listed; the others of :data:`KEY_PACKAGES` only when already imported.
_CORE_PACKAGES = ("numpy", "pandas", "pyarrow", "dask", "distributed", "cloudpickle")
_IMPORT_NAMES = {"scikit-learn": "sklearn", "dask-jobqueue": "dask_jobqueue"}


def _package_versions(names: Iterable[str]) -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {}
    for name in names:
        mod = sys.modules.get(_IMPORT_NAMES.get(name, name))
        version = getattr(mod, "__version__", None) if mod is not None else None
        if version is None and name in _CORE_PACKAGES:
            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                version = None
        if version is not None:
            out[name] = str(version)
    return out


def _metalab_version() -> str:
    """The installed metalab's version, from its distribution metadata.

    Not ``from . import __version__``: ``metalab/__init__.py`` imports this module, and
    a leaf module must not import the package's front door back.
    """
    from importlib import metadata

    try:
        return metadata.version("metalab")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


@functools.lru_cache(maxsize=1)
def _platform() -> dict[str, str]:
    import platform

    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def environment() -> dict[str, Any]:
    """Versions of metalab, Python and key packages, the platform, host, pid and cwd."""
    import socket

    return {
        "metalab": _metalab_version(),
        **_platform(),
        "packages": _package_versions(KEY_PACKAGES),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "cwd": os.getcwd(),
    }


def _git(args: list[str], cwd: Path) -> str | None:
    import subprocess

    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            env=env,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):  # no git, or it hung
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip()


def git_info(path: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """Commit and dirty flag of the git repository holding the file ``path``.

    Returns ``None`` when git is missing or the file is not in a repository.  ``dirty``
    is True when tracked files differ from the commit, or when the file itself is not
    committed (untracked).
    """
    if path is None:
        return None
    file = Path(path).resolve()
    folder = file.parent if not file.is_dir() else file
    if not folder.is_dir():
        return None
    root = _git(["rev-parse", "--show-toplevel"], folder)
    if root is None:
        return None
    commit = _git(["rev-parse", "HEAD"], folder)
    status = _git(["status", "--porcelain", "--untracked-files=no"], folder)
    tracked = file.is_file() and bool(_git(["ls-files", "--", file.name], folder))
    return {
        "root": root,
        "commit": commit or None,  # None: a repository without commits
        "branch": _git(["rev-parse", "--abbrev-ref", "HEAD"], folder) if commit else None,
        "dirty": bool(status) or not tracked or commit is None,
        "source_tracked": tracked,
    }


def operation_source_file(op: Operation) -> str | None:
    """The file that defines the operation's function, or None (REPL, built-in)."""
    try:
        src = inspect.getsourcefile(op.func)
    except (TypeError, OSError):
        return None
    if src is None or not os.path.isfile(src):
        return None
    return os.path.abspath(src)


def collect(op: Operation) -> dict[str, Any]:
    """Everything a sweep records about its environment and the operation's code."""
    src = operation_source_file(op)
    return {
        "collected_at": time.time(),
        **environment(),
        "operation": {
            "name": op.name,
            "version": op.version,
            "module": getattr(op.func, "__module__", None),
            "qualname": getattr(op.func, "__qualname__", None),
            "source_file": src,
            "source_hash": op.source_hash,
        },
        "git": git_info(src),
    }


class Collector:
    """Collects :func:`collect` in a background thread (git calls overlap the planning)."""

    def __init__(self, op: Operation) -> None:
        self._op = op
        self._result: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="metalab-provenance", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            self._result = collect(self._op)
        except BaseException as exc:  # never let provenance break a sweep
            self._error = exc

    def result(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """The provenance (only ``error`` when collecting it failed or took too long)."""
        self._thread.join(timeout_s)
        if self._result is not None:
            return self._result
        reason = repr(self._error) if self._error is not None else "timed out"
        return {"error": f"could not collect provenance: {reason}", **environment()}


def check_source_changed(store: Store, op: Operation, run_ids: Any) -> bool:
    """Warn when existing records of these runs were made by other code of the same version.

    Compares ``op.source_hash`` with the source hash recorded by the sweeps that made
    the current records of ``run_ids`` (same operation name and version).  Returns True
    when it warned.
    """
    current = op.source_hash
    if current is None:
        return False
    sweeps = {s.get("sweep"): s for s in store.read_sweeps()}
    stale = {
        sid
        for sid, s in sweeps.items()
        if s.get("operation") == op.name
        and str(s.get("operation_version")) == op.version
        and s.get("source_hash") not in (None, current)
    }
    if not stale:
        return False
    import pyarrow.compute as pc

    recs = store.records(columns=["run_id", "sweep"])
    if not recs.num_rows:
        return False
    import pyarrow as pa

    ids = pa.array([str(r) for r in run_ids], type=pa.string())
    recs = recs.filter(pc.is_in(recs.column("run_id"), value_set=ids))
    made_by = pc.value_counts(recs.column("sweep")).to_pylist()
    n = sum(int(v["counts"]) for v in made_by if v["values"] in stale)
    if not n:
        return False
    warnings.warn(
        f"the source code of operation {op.name!r} (version={op.version!r}) changed since "
        f"{n} existing record(s) in {store.root} were made, but its version did not; "
        "resume=True keeps those results from the old code. Bump the version, e.g. "
        f"@metalab.operation(name={op.name!r}, version=...), to rerun them with the new code "
        "(or run with resume=False)",
        SourceChangedWarning,
        stacklevel=_user_stacklevel(),
    )
    return True


def _user_stacklevel() -> int:
    """The ``stacklevel`` pointing a warning issued by our caller at the first frame
    outside the metalab package (the user's ``metalab.run`` line), however deep the call."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(package):
        frame = frame.f_back
        level += 1
    return level
