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
workers cannot import) travel by value even when nested inside metalab objects.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from ..errors import ExecutorError

_lock = threading.Lock()
_cache: dict[str, tuple[Any, Any]] = {}  # digest -> (operation, context), this process
_CACHE_SIZE = 2


class ShippedRef:
    """What a partition task receives instead of the context: where the payload is."""

    metalab_shipped = True

    def __init__(self, path: str, digest: str) -> None:
        self.path = path
        self.digest = digest

    def __dask_tokenize__(self) -> str:
        return self.digest

    def __repr__(self) -> str:
        return f"ShippedRef({self.path!r})"

    def resolve(self) -> tuple[Any, Any]:
        """``(operation, context)``, read and unpickled once per process."""
        with _lock:
            value = _cache.get(self.digest)
            if value is None:
                value = _load(self.path, self.digest)
                while len(_cache) >= _CACHE_SIZE:
                    _cache.pop(next(iter(_cache)))
                _cache[self.digest] = value
            return value


def _load(path: str, digest: str) -> tuple[Any, Any]:
    import cloudpickle

    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise ExecutorError(
            f"a worker cannot read the sweep's operation and context from {path} ({exc}); "
            "the store must be on a filesystem shared by the driver and every worker"
        ) from exc
    if hashlib.sha256(blob).hexdigest() != digest:
        raise ExecutorError(f"{path} changed while the sweep ran; run the sweep again")
    return cloudpickle.loads(blob)


def ship(path: Path, operation: Any, context: Any) -> ShippedRef:
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
    atomic_write(path, lambda p: p.write_bytes(blob))
    return ShippedRef(str(path), hashlib.sha256(blob).hexdigest())
