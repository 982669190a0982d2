"""Computing a sweep's partition tasks on the session's scheduler.

In-process sessions hand the tasks to ``dask.compute``.  On a cluster every task is a
future; a task that fails for a reason of the cluster (its worker died, its inputs were
lost) is submitted once more, and the new attempt picks up where the journals stop.  A
watchdog cancels everything when no usable worker is connected for
``session.worker_timeout_s``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..store.atomic import is_disk_full
from ..store.records import FAILED, SUCCESS

if TYPE_CHECKING:
    from ..executors.base import Session
    from .progress import JournalPoller
    from .watchdog import WorkerWatchdog


def compute(
    session: Session,
    parts: list[Any],
    *,
    poller: JournalPoller | None = None,
    resources: Mapping[str, float] | None = None,
) -> list[Any]:
    """Compute every partition; returns their summaries (or the exceptions of lost ones).

    On a cluster, ``resources`` (the operation's) restrict the tasks to workers that
    offer them, and :class:`~metalab.ExecutorError` is raised when no usable worker is
    connected for ``session.worker_timeout_s``.  In-process, ``resources`` are ignored.
    """
    if not session.distributed:
        return _compute_in_process(session, parts)
    return _ClusterCompute(session, parts, poller, dict(resources or {})).run()


def _compute_in_process(session: Session, parts: list[Any]) -> list[Any]:
    from dask.base import compute as dask_compute

    kwargs: dict[str, Any] = {"scheduler": session.get}
    if session.num_workers:
        kwargs["num_workers"] = session.num_workers
    return list(dask_compute(*parts, **kwargs))


def _result(fut: Any) -> Any:
    """The summary of a finished task, or None."""
    if fut.status != "finished":
        return None
    try:
        return fut.result()
    except Exception:  # its worker died before the result was fetched
        return None


def _exception(fut: Any) -> BaseException:
    try:
        exc: BaseException = fut.exception()
    except Exception as e:  # cancelled: its inputs were lost with a worker
        exc = e
    return exc


class _ClusterCompute:
    """The partition tasks of one sweep as futures on a ``distributed`` client."""

    def __init__(
        self,
        session: Session,
        parts: list[Any],
        poller: JournalPoller | None,
        resources: dict[str, float],
    ) -> None:
        self.session = session
        self.client = session.client
        self.parts = parts
        self.poller = poller
        self.resources = resources or None
        self.futures: list[Any] = []
        self.index: dict[Any, int] = {}  # future key -> partition number
        self.results: list[Any] = [None] * len(parts)
        self.resubmitted: set[int] = set()

    def run(self) -> list[Any]:
        from distributed import as_completed

        with warnings.catch_warnings():
            # The context travels in the store payload, so graphs stay small; keep quiet anyway.
            warnings.filterwarnings("ignore", message=".*[Ll]arge graph.*")
            self.futures = list(self.client.compute(self.parts, resources=self.resources))
        self.index = {f.key: i for i, f in enumerate(self.futures)}
        watchdog = self._watchdog()
        try:
            pending = as_completed(self.futures, loop=self.client.loop)
            for fut in pending:
                if watchdog is not None and watchdog.error is not None:
                    raise watchdog.error  # no usable worker: the futures were cancelled
                self._collect(fut, pending)
        except BaseException:
            self.cancel()
            raise
        finally:
            if watchdog is not None:
                watchdog.stop()
        return self.results

    def cancel(self) -> None:
        self.client.cancel(list(self.futures))

    def _watchdog(self) -> WorkerWatchdog | None:
        if self.session.worker_timeout_s is None:
            return None
        from .watchdog import WorkerWatchdog

        return WorkerWatchdog(
            self.client,
            self.session.worker_timeout_s,
            resources=self.resources,
            diagnose=self.session.diagnose,
            on_fail=self.cancel,
        ).start()

    def _collect(self, fut: Any, pending: Any) -> None:
        """Keep a finished task's summary; submit a lost one once more."""
        i = self.index[fut.key]
        res = _result(fut)
        if res is None and fut.status == "error":
            exc = _exception(fut)
            if is_disk_full(exc):  # every task would fail the same way: stop the sweep
                raise exc
        if res is not None:
            self.results[i] = res
            if self.poller is not None:
                self.poller.final[i] = (int(res[SUCCESS].sum()), int(res[FAILED].sum()))
        elif i not in self.resubmitted:
            # e.g. KilledWorker: a new task picks up where the journals stop.
            self.resubmitted.add(i)
            new = self.client.compute(self.parts[i], retries=0, resources=self.resources)
            self.index[new.key] = i
            pending.add(new)
            self.futures.append(new)
        else:
            self.results[i] = _exception(fut)
