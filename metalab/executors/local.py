"""In-process executors: the synchronous scheduler (default) and a thread pool."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ..errors import ExecutorConfigError
from .base import Executor, Session


class LocalExecutor(Executor):
    """Runs every partition in the calling thread (Dask's synchronous scheduler).

    No cluster start-up: the right choice for small and fast sweeps, and for debugging
    (breakpoints and tracebacks work as usual).
    """

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """Dask's synchronous scheduler."""
        from dask.local import get_sync

        yield Session(n_workers=1, get=get_sync)


class ThreadExecutor(Executor):
    """Runs partitions on ``max_workers`` threads (for operations that release the GIL).

    Parameters
    ----------
    max_workers
        Threads (default: the number of CPUs).
    """

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise ExecutorConfigError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers or os.cpu_count() or 1

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """Dask's threaded scheduler with ``max_workers`` threads."""
        from dask.threaded import get

        yield Session(n_workers=self.max_workers, get=get, num_workers=self.max_workers)
