"""Provenance: where and with what code and environment a sweep ran.

Recorded once per store (``manifest.json``, when the store is created) and once per
sweep (``sweeps/<sweep>.json``); each run record adds its host, pid, worker address,
start and end times and duration.  :func:`check_source_changed` warns, once per edit,
when an operation's code changed but its ``version=`` did not; :func:`acknowledge_source`
accepts such an edit as harmless.  Both leave a note in ``<store>/sources/``.
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
    "acknowledge_source",
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
    out: dict[str, str] = {}
    for name in names:
        mod = sys.modules.get(_IMPORT_NAMES.get(name, name))
        version = getattr(mod, "__version__", None) if mod is not None else None
        if version is None and name in _CORE_PACKAGES:
            version = _installed_version(name)
        if version is not None:
            out[name] = str(version)
    return out


@functools.cache
def _installed_version(name: str) -> str | None:
    """A distribution's installed version (cached: a lookup scans ``sys.path``, ~0.5 ms,
    and every sweep records the same few twice)."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _metalab_version() -> str:
    """The installed metalab's version, from its distribution metadata.

    Not ``from . import __version__``: ``metalab/__init__.py`` imports this module, and
    a leaf module must not import the package's front door back.
    """
    return _installed_version("metalab") or "unknown"  # None: a source tree, not installed


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
    return _gits([args], cwd)[0]


def _gits(commands: list[list[str]], cwd: Path) -> list[str | None]:
    """Run git ``commands`` at once (each a few ms of process start): their stripped
    outputs, None for one that failed, hung, or when git is missing."""
    import subprocess

    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    procs: list[subprocess.Popen[str] | None] = []
    for args in commands:
        try:
            procs.append(
                subprocess.Popen(
                    ["git", *args],
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    env=env,
                )
            )
        except OSError:  # no git
            procs.append(None)
    deadline = time.monotonic() + _GIT_TIMEOUT_S
    out: list[str | None] = []
    for proc in procs:
        if proc is None:
            out.append(None)
            continue
        try:
            stdout, _ = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:  # it hung
            proc.kill()
            proc.communicate()
            out.append(None)
            continue
        out.append(stdout.strip() if proc.returncode == 0 else None)
    return out


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
    head, status, listed = _gits(
        [
            ["rev-parse", "--show-toplevel", "HEAD", "--abbrev-ref", "HEAD"],
            ["status", "--porcelain", "--untracked-files=no"],
            ["ls-files", "--", file.name],
        ],
        folder,
    )
    lines = head.split("\n") if head is not None else []
    root: str | None
    commit: str | None
    branch: str | None
    if len(lines) == 3:
        root, commit, branch = lines
    else:  # not a repository, or one without commits (HEAD names nothing yet)
        root, commit, branch = _git(["rev-parse", "--show-toplevel"], folder), None, None
        if root is None:
            return None
    tracked = file.is_file() and bool(listed)
    return {
        "root": root,
        "commit": commit or None,  # None: a repository without commits
        "branch": branch if commit else None,
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

    def ready(self) -> bool:
        """Whether :meth:`result` would return at once."""
        return not self._thread.is_alive()

    def result(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """The provenance (only ``error`` when collecting it failed or took too long)."""
        self._thread.join(timeout_s)
        if self._result is not None:
            return self._result
        reason = repr(self._error) if self._error is not None else "timed out"
        return {"error": f"could not collect provenance: {reason}", **environment()}


# --- source changes --------------------------------------------------------------------
#: Notes on source changes, one JSON file each (no read-modify-write, so concurrent
#: drivers never lose one): ``kind`` "warned" or "acknowledged", the operation's name,
#: version and current ``source_hash``, and the ``older`` hashes it was compared with.
SOURCES_FOLDER = "sources"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_CLI_FILE = _PACKAGE_DIR + "cli.py"


def _same_operation(entry: dict[str, Any], op: Operation) -> bool:
    return entry.get("operation") == op.name and str(entry.get("operation_version")) == op.version


def source_notes(store: Store) -> list[dict[str, Any]]:
    """The notes of ``<store>/sources/``, oldest first (unreadable ones are skipped)."""
    import json

    folder = store.root / SOURCES_FOLDER
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    notes = []
    for name in names:
        if name.endswith(".json") and not name.startswith("."):
            try:
                note = json.loads((folder / name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(note, dict):
                notes.append(note)
    notes.sort(key=lambda n: n.get("at", 0))
    return notes


def _write_note(store: Store, op: Operation, kind: str, older: Iterable[str]) -> None:
    import uuid

    from .store.atomic import atomic_write_json

    folder = store.root / SOURCES_FOLDER
    folder.mkdir(exist_ok=True)
    current = str(op.source_hash)
    note = {
        "kind": kind,
        "at": time.time(),
        "operation": op.name,
        "operation_version": op.version,
        "source_hash": current,
        "older": sorted(older),
    }
    atomic_write_json(folder / f"{kind}-{current[:12]}-{uuid.uuid4().hex[:8]}.json", note)


def _other_hashes(store: Store, op: Operation) -> dict[str, str]:
    """Sweep id -> source hash, for the sweeps of this operation and version made by other code."""
    out = {}
    for s in store.read_sweeps():
        h = s.get("source_hash")
        if _same_operation(s, op) and h not in (None, op.source_hash):
            out[str(s.get("sweep"))] = str(h)
    return out


def _stale_records(store: Store, op: Operation, run_ids: Any) -> dict[str, int]:
    """Older source hash -> number of current records of ``run_ids`` it made, not yet settled.

    A hash is settled for the current one when a note says the user was warned about it,
    or acknowledged it.
    """
    settled = {
        h
        for note in source_notes(store)
        if _same_operation(note, op) and note.get("source_hash") == op.source_hash
        for h in note.get("older", [])
    }
    by_sweep = {k: h for k, h in _other_hashes(store, op).items() if h not in settled}
    if not by_sweep:
        return {}
    import pyarrow as pa
    import pyarrow.compute as pc

    recs = store.records(columns=["run_id", "sweep"])
    if not recs.num_rows:
        return {}
    ids = pa.array([str(r) for r in run_ids], type=pa.string())
    recs = recs.filter(pc.is_in(recs.column("run_id"), value_set=ids))
    out: dict[str, int] = {}
    for v in pc.value_counts(recs.column("sweep")).to_pylist():
        h = by_sweep.get(v["values"])
        if h is not None:
            out[h] = out.get(h, 0) + int(v["counts"])
    return out


def _warn_at_user_code(message: str, op: Operation) -> None:
    """Warn at the first frame outside metalab; from the CLI, at the operation's definition.

    A fixed ``stacklevel`` would name a metalab file (``metalab/cli.py``, the sweep) for
    some callers; the user's own line is what a warning should point at.
    """
    frame = sys._getframe(0)
    level, via_cli = 1, False
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        via_cli = via_cli or frame.f_code.co_filename == _CLI_FILE
        frame, level = frame.f_back, level + 1
    src = operation_source_file(op)
    if via_cli and src is not None:  # the stack holds only runpy and the console script
        code = op.func.__code__
        warnings.warn_explicit(
            message,
            SourceChangedWarning,
            src,
            code.co_firstlineno,  # the decorator line, where version= is written
            module_globals=op.func.__globals__,
        )
    else:
        warnings.warn(message, SourceChangedWarning, stacklevel=level)


def check_source_changed(store: Store, op: Operation, run_ids: Any) -> bool:
    """Warn when existing records of these runs were made by other code of the same version.

    Compares ``op.source_hash`` with the source hash recorded by the sweeps that made
    the current records of ``run_ids`` (same operation name and version).  Warns once
    per edit: a note in the store settles the older hashes for the current one, so the
    runs after it stay quiet; so does :func:`acknowledge_source`.  Returns True when it
    warned.
    """
    if op.source_hash is None:
        return False
    stale = _stale_records(store, op, run_ids)
    if not stale:
        return False
    n = sum(stale.values())
    name = getattr(op.func, "__name__", "operation")
    _warn_at_user_code(
        f"the source code of operation {op.name!r} (version={op.version!r}) changed (now "
        f"{str(op.source_hash)[:12]}) since "
        f"{n} existing record(s) in {store.root} were made, but its version did not; "
        "resume=True keeps those results from the old code. Bump the version, e.g. "
        f"@metalab.operation(name={op.name!r}, version=...), to rerun them with the new code "
        "(or run with resume=False). If the edit cannot change results, acknowledge it: "
        f"metalab.acknowledge_source({str(store.root)!r}, {name}). Shown once per edit",
        op,
    )
    _write_note(store, op, "warned", stale)  # after warning: -W error keeps raising
    return True


def acknowledge_source(store: str | os.PathLike[str], operation: Any) -> list[str]:
    """Accept an edit of an operation's code as harmless: no rerun, no warning.

    Records in the store that the operation's current code gives the same results as
    the code of its earlier sweeps (same name and ``version=``), so their records stay
    current and :class:`SourceChangedWarning` is not shown for them.  Call it once,
    after the edit (from a shell or notebook): it covers the code as it is now, and a
    call left in a script would also silence every later edit.  An edit that can change
    results needs a new ``version=`` instead.

    Parameters
    ----------
    store
        The store folder (default of an experiment: ``runs/<experiment name>``).
    operation
        The edited :class:`~metalab.Operation`, or an :class:`~metalab.Experiment`.

    Returns
    -------
    list of str
        The older source hashes acknowledged (empty when there was nothing to accept).

    Examples
    --------
    >>> metalab.acknowledge_source("runs/train", train)  # doctest: +SKIP
    ['8c14...']
    """
    from .errors import ExperimentError
    from .operation import Operation
    from .store import Store

    op = getattr(operation, "operation", operation)
    if not isinstance(op, Operation):
        raise ExperimentError(
            "acknowledge_source(store, operation) takes a metalab operation or experiment, "
            f"got {type(operation).__name__}; e.g. metalab.acknowledge_source('runs/train', train)"
        )
    if op.source_hash is None:
        raise ExperimentError(
            f"operation {op.name!r} has no source file (defined in a REPL or exec?), so its "
            "edits are not tracked and there is nothing to acknowledge"
        )
    st = Store.open(store)
    sweeps = st.read_sweeps()
    if not any(_same_operation(s, op) for s in sweeps):
        known = sorted({f"{s.get('operation')} {s.get('operation_version')}" for s in sweeps})
        raise ExperimentError(
            f"the store at {st.root} has no sweep of operation {op.name!r} version "
            f"{op.version!r}; it has {known or 'no sweeps'}. Check the store path"
        )
    older = sorted(set(_other_hashes(st, op).values()))
    if older:
        _write_note(st, op, "acknowledged", older)
        st.sync()
    return older
