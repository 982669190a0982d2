"""Watch that a sweep on a distributed cluster has workers that can run it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ExecutorError


def _has(worker: Mapping[str, Any], resources: Mapping[str, float]) -> bool:
    offered = worker.get("resources") or {}
    return all(offered.get(k, 0) >= v for k, v in resources.items())


class WorkerWatchdog:
    """Cancels a sweep when no usable worker has been connected for ``timeout_s``.

    The time counts from the first answer of the scheduler that lists no usable worker.

    A worker is usable when it offers the operation's resources.  This bounds sweeps
    whose workers never arrive (jobs stuck in the queue, a worker command that fails),
    or all died and are not replaced.
    """

    def __init__(
        self,
        client: Any,
        timeout_s: float,
        *,
        resources: Mapping[str, float] | None = None,
        diagnose: Callable[[], str] | None = None,
        on_fail: Callable[[], None] | None = None,
        interval_s: float = 1.0,
    ) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.resources = dict(resources or {})
        self.diagnose = diagnose
        self.on_fail = on_fail
        self.interval_s = interval_s
        self.error: ExecutorError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="metalab-watchdog")

    def start(self) -> WorkerWatchdog:
        """Start watching in a daemon thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching and wait briefly for the thread to end."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _workers(self) -> dict[str, Any]:
        try:
            return dict(self.client.scheduler_info(n_workers=-1)["workers"])
        except TypeError:  # older distributed
            return dict(self.client.scheduler_info()["workers"])

    def _loop(self) -> None:
        missing_since: float | None = None
        seen_any = False
        while not self._stop.wait(self.interval_s):
            try:
                workers = self._workers()
            except Exception:
                continue  # the client reconnects, or the sweep ends
            # Timed at the answer: on a loaded machine the question may wait for long, and
            # that wait says nothing about the workers (counting it gave false alarms).
            now = time.monotonic()
            seen_any = seen_any or bool(workers)
            if any(_has(w, self.resources) for w in workers.values()):
                missing_since = None
                continue
            if missing_since is None:
                missing_since = now
            if now - missing_since < self.timeout_s:
                continue
            self.error = ExecutorError(self._message(workers, seen_any))
            if self.on_fail is not None:
                self.on_fail()
            return

    def _message(self, workers: dict[str, Any], seen_any: bool) -> str:
        t = f"{self.timeout_s:g} s"
        if workers and self.resources:
            msg = (
                f"no Dask worker offers the resources {self.resources} the operation needs "
                f"(waited {t}); start workers with them, e.g. dask worker --resources "
                f'"{" ".join(f"{k}={v:g}" for k, v in self.resources.items())}" or '
                f"SlurmExecutor(resources={self.resources})"
            )
        elif seen_any:
            msg = (
                f"all Dask workers are gone and none came back for {t}; they may have been "
                "killed (out of memory, walltime, scancel) or crash on start"
            )
        else:
            msg = (
                f"no Dask worker connected within {t}: the workers are still queued or "
                "cannot start"
                + (" (see below)" if self.diagnose is not None else "")
                + "; raise worker_timeout_s= to wait longer"
            )
        if self.diagnose is not None:
            try:
                msg += "\n" + self.diagnose()
            except Exception as exc:  # never hide the original message
                msg += f"\n(could not inspect the workers: {exc})"
        msg += "\nCompleted runs are kept; run again with resume=True to finish the sweep."
        return msg
