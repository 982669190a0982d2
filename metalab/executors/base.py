"""The executor interface: an executor chooses the Dask scheduler a sweep runs on.

Every executor runs the same sweep code path; it only provides a :class:`Session` (a
scheduler ready to compute) for the length of one sweep.  A new backend subclasses
:class:`Executor` and implements :meth:`Executor.session`; batch systems reached
through dask-jobqueue subclass :class:`~metalab.executors.jobqueue.JobQueueExecutor`
and mostly declare class attributes.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any


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


class Executor(abc.ABC):
    """Where the partitions of a sweep run.

    Subclasses implement :meth:`session`.  metalab enters it once per sweep, after
    planning, and leaves it when the sweep ends, also on errors and Ctrl-C: an
    executor that starts a cluster closes it there, one that was handed a cluster
    leaves it running.
    """

    @abc.abstractmethod
    def session(self) -> AbstractContextManager[Session]:
        """A context manager yielding the :class:`Session` one sweep computes on."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"
