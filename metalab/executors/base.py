"""The executor interface: an executor chooses the Dask scheduler a sweep runs on.

Every executor runs the same sweep code path; it only provides a :class:`Session` (a
scheduler ready to compute) for the length of one sweep, or, inside a ``with executor:``
block, one session that every sweep of the block shares (a warm cluster).  A new backend
subclasses :class:`Executor` and implements :meth:`Executor.session`; batch systems
reached through dask-jobqueue subclass
:class:`~metalab.executors.jobqueue.JobQueueExecutor` and mostly declare class attributes.
"""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from ..errors import ExecutorConfigError


@dataclass
class Session:
    """A scheduler ready to compute: either a local ``get`` function or a distributed client."""

    n_workers: int
    #: Dask scheduler ``get`` function (in-process executors).
    get: Callable[..., Any] | None = None
    #: Threads of the threaded scheduler.
    num_workers: int | None = None
    #: ``distributed.Client`` (cluster executors).
    client: Any = None
    #: Fail when no usable worker is connected for this long (None: wait forever).
    worker_timeout_s: float | None = None
    #: Returns a text explaining why workers are missing (batch queue state, worker logs).
    diagnose: Callable[[], str] | None = None

    @property
    def distributed(self) -> bool:
        """True when partitions run on a ``distributed`` cluster (possibly other machines)."""
        return self.client is not None

    @property
    def dashboard_link(self) -> str | None:
        """The cluster's dashboard address, when there is one."""
        if self.client is None:
            return None
        try:
            return str(self.client.dashboard_link)
        except Exception:
            return None


_ENTERING = threading.Lock()


class Executor(abc.ABC):
    """Where the partitions of a sweep run.

    Subclasses implement :meth:`session`.  metalab enters it once per sweep, after
    planning, and leaves it when the sweep ends, also on errors and Ctrl-C: an
    executor that starts a cluster closes it there, one that was handed a cluster
    leaves it running.

    Used as a context manager, an executor enters its session once, at the start of the
    block, and every :func:`metalab.run` of the block computes on it (a cluster starts
    once, not per sweep); the block's end closes it, also on errors and Ctrl-C:

    >>> with metalab.ProcessExecutor(max_workers=4) as on_4:  # doctest: +SKIP
    ...     first = metalab.run(exp_a, executor=on_4)
    ...     second = metalab.run(exp_b, executor=on_4)  # no start-up
    """

    #: The session held by a ``with executor:`` block and the stack that closes it.
    _warm: tuple[contextlib.ExitStack, Session] | None = None

    @abc.abstractmethod
    def session(self) -> AbstractContextManager[Session]:
        """A context manager yielding the :class:`Session` one sweep computes on."""

    @contextlib.contextmanager
    def sweep_session(self) -> Iterator[Session]:
        """The session a sweep computes on: the block's (kept open), else a new one."""
        warm = self._warm
        if warm is not None:
            yield warm[1]
            return
        with self.session() as session:
            yield session

    def __enter__(self) -> Self:
        """Enter the session (start the cluster) for every sweep of the block."""
        if self._warm is not None:
            raise ExecutorConfigError(
                f"{type(self).__name__} is already open in a with block; use it as it is, "
                "or make a second executor for a second cluster"
            )
        stack = contextlib.ExitStack()
        with _ENTERING:  # two threads entering at once must not start two clusters
            session = stack.enter_context(self.session())
            self._warm = (stack, session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the block's session (the cluster stops, its workers exit)."""
        warm, self._warm = self._warm, None
        if warm is not None:
            warm[0].close()

    @property
    def is_open(self) -> bool:
        """True inside a ``with executor:`` block (sweeps share its session)."""
        return self._warm is not None

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"
