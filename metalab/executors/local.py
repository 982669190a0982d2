"""In-process executors: the synchronous scheduler (default) and a thread pool."""

from __future__ import annotations

import contextlib
import functools
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

    The threads live for one sweep, or for every sweep of a ``with executor:`` block.

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
        """Dask's threaded scheduler on a pool of ``max_workers`` threads, shut down after."""
        from concurrent.futures import ThreadPoolExecutor

        from dask import threaded

        # Dask's own pools live until the interpreter exits; this one ends with the session.
        pool_class = getattr(threaded, "ContextAwareThreadPoolExecutor", ThreadPoolExecutor)
        pool = pool_class(self.max_workers, thread_name_prefix="metalab-thread")
        get = functools.partial(threaded.get, pool=pool)
        try:
            yield Session(n_workers=self.max_workers, get=get, num_workers=self.max_workers)
        except BaseException:
            # Ctrl-C or an error: do not wait for a run in flight (the stop flag ends it).
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
