"""Ship the operation and the context to cluster workers once per worker process.

The driver cloudpickles ``(operation, context)`` once into the store
(``sweeps/<sweep>.payload``), which the workers share anyway: they write their records
there.  Partition tasks carry only a small :class:`ShippedRef` (the file's path and
digest); each worker process reads and unpickles the payload on the first partition it
runs and keeps it for the others.  So a large context never travels through the
scheduler, neither per task nor per worker, and a worker that joins late (a replacement
for a lost SLURM job) finds it on disk.

cloudpickle (not pickle) writes the payload, so modules registered with
``cloudpickle.register_pickle_by_value`` (scripts, notebooks, test modules: code the
workers cannot import) travel by value even when nested inside metalab objects
(:func:`ship_code_by_value` registers the operation's and the context's modules).

Executors that run partitions in the driver's process get an :class:`Inline` payload
instead: the operation and context themselves.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from ..errors import ExecutorError

if TYPE_CHECKING:
    from ..operation import Operation
    from ..store.remote import Remote

_lock = threading.Lock()
_cache: dict[str, tuple[Operation, Any]] = {}  # digest -> (operation, context), this process
_CACHE_SIZE = 2


class Inline:
    """The operation and context themselves, for partitions run in the driver's process."""

    def __init__(self, operation: Operation, context: Any) -> None:
        self.operation = operation
        self.context = context

    def __dask_tokenize__(self) -> str:
        # The graph keys are unique per sweep already (SweepTask); never hash the context.
        return f"metalab-inline-{id(self)}"

    def resolve(self) -> tuple[Operation, Any]:
        """``(operation, context)``."""
        return self.operation, self.context


class ShippedRef:
    """What a cluster's partition task receives: where the operation and context are."""

    def __init__(self, path: str, digest: str, remote: Remote | None = None) -> None:
        self.path = path
        self.digest = digest
        #: A remote store: ``path`` is then the payload's store-relative key.
        self.remote = remote

    def __dask_tokenize__(self) -> str:
        return self.digest

    def __repr__(self) -> str:
        return f"ShippedRef({self.path!r})"

    def resolve(self) -> tuple[Operation, Any]:
        """``(operation, context)``, read and unpickled once per process."""
        with _lock:
            value = _cache.get(self.digest)
            if value is None:
                value = _load(self.path, self.digest, self.remote)
                while len(_cache) >= _CACHE_SIZE:
                    _cache.pop(next(iter(_cache)))
                _cache[self.digest] = value
            return value


#: What a partition task receives besides its descriptors and its :class:`SweepTask`.
Payload: TypeAlias = Inline | ShippedRef


def _load(path: str, digest: str, remote: Remote | None) -> tuple[Operation, Any]:
    import cloudpickle

    try:
        blob = Path(path).read_bytes() if remote is None else remote.get(path)
    except OSError as exc:
        raise ExecutorError(
            f"a worker cannot read the sweep's operation and context from {path} ({exc}); "
            "the store must be on a filesystem shared by the driver and every worker"
        ) from exc
    if hashlib.sha256(blob).hexdigest() != digest:
        raise ExecutorError(f"{path} changed while the sweep ran; run the sweep again")
    operation, context = cloudpickle.loads(blob)
    return operation, context


def ship(path: Path, operation: Operation, context: Any) -> ShippedRef:
    """Write ``(operation, context)`` to ``path`` (atomically) and return its reference."""
    import cloudpickle

    from ..store.atomic import atomic_write

    try:
        blob = cloudpickle.dumps((operation, context), protocol=5)
    except Exception as exc:
        raise ExecutorError(
            f"cannot send the operation and context to the workers: pickling failed "
            f"({type(exc).__name__}: {exc}); keep open files, locks and connections out of "
            "the context (open them inside the operation)"
        ) from exc
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        tmp.write_bytes(blob)

    atomic_write(path, write)
    return ShippedRef(str(path), hashlib.sha256(blob).hexdigest())


def ship_code_by_value(operation: Operation, context: Any) -> None:
    """Make workers that cannot import the operation's module unpickle it by value.

    Modules that are installed (site-packages) or part of metalab travel by reference.
    """
    import importlib.util

    import cloudpickle

    for obj in (operation.func, type(context)):
        modname = getattr(obj, "__module__", None)
        if not modname or modname in ("__main__", "builtins") or modname.startswith("metalab"):
            continue
        mod = sys.modules.get(modname)
        spec = importlib.util.find_spec(modname) if mod is None else mod.__spec__
        origin = getattr(spec, "origin", None) or ""
        installed = any(
            origin.startswith(p)
            for p in sys.path
            if p and ("site-packages" in p or "dist-packages" in p)
        )
        if mod is not None and not installed:
            with contextlib.suppress(ValueError):
                cloudpickle.register_pickle_by_value(mod)
