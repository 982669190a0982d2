"""Running trials on the session: futures on a cluster, rounds in-process.

On a ``distributed`` client each trial is one future; as soon as one finishes its
result is told and a new trial is asked (``cap`` trials in flight).  In-process
sessions (the default executor, threads) compute rounds of ``cap`` trials.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..store.records import FAILED, SUCCESS

if TYPE_CHECKING:
    import pandas as pd

    from ..executors.base import Session
    from ..sweep.shipping import Payload
    from .driver import Search, Trial


def execute_trial(pdf: pd.DataFrame, task: Any, payload: Payload, number: int) -> pd.DataFrame:
    """One trial's runs as partition ``number`` of the sweep (the Dask task)."""
    from ..sweep.partition import execute_partition

    return execute_partition(pdf, task, payload, partition_info={"number": number})


class TrialRunner:
    """Submits trials of one search to one session and tells their results."""

    def __init__(self, search: Search, session: Session) -> None:
        from ..sweep.partition import SweepTask

        self.search, self.session = search, session
        sweep = search.sweep
        self.payload = self._ship()
        self.task = SweepTask(
            store_root=str(sweep.store.root),
            sweep=sweep.sweep_id,
            seed_base=search.exp.seeds.base,
            retries=sweep.options.retries,
            capture_output=sweep.options.capture_output,
            timeout_s=sweep.options.timeout_s,
            on_run=None if session.distributed else sweep.counts.add,
        )
        self.summaries: list[Any] = []
        self.attempts = 0

    def _ship(self) -> Payload:
        from ..sweep.shipping import Inline, ship, ship_code_by_value

        sweep = self.search.sweep
        op, context = sweep.experiment.operation, sweep.experiment.context
        if not self.session.distributed:
            return Inline(op, context)
        ship_code_by_value(op, context)
        sweep.payload_path = sweep.store.layout.sweeps / f"{sweep.sweep_id}.payload"
        return ship(sweep.payload_path, op, context)

    def delayed(self, trial: Trial) -> Any:
        """The trial's partition task (one partition: its runs without a record)."""
        from dask.delayed import delayed

        # One partition of descriptors: a delayed call of the same partition task that
        # map_partitions builds (a Dask dataframe per trial costs ~10 ms for nothing).
        key = f"metalab-trial-{self.task.sweep}-{trial.number}-{self.attempts}"
        self.attempts += 1
        return delayed(execute_trial, pure=False)(
            self.search.frame(trial), self.task, self.payload, trial.number, dask_key_name=key
        )

    def _next(self, todo: list[Trial]) -> Trial | None:
        """The next trial to run: a stored one first, else a new one (None: budget spent)."""
        s = self.search
        while True:
            if todo:
                trial = todo.pop(0)
            elif len(s.trials) < s.source.n_trials:
                trial = s.new_trial()
            else:
                return None
            if s.finished(trial):  # proposed before: its runs are done, tell again
                s.tell(trial)
                continue
            return trial

    def _done(self, trial: Trial, summary: Any) -> None:
        self.summaries.append(summary)
        self.search.read_outcomes(trial.run_ids, part=trial.number)
        if self.search.finished(trial):
            self.search.tell(trial)

    def run(self, todo: list[Trial], cap: int) -> None:
        """Run the stored trials ``todo`` then new ones until ``n_trials``."""
        if self.session.distributed:
            self._run_futures(todo, cap)
        else:
            self._run_rounds(todo, cap)

    def _run_rounds(self, todo: list[Trial], cap: int) -> None:
        from ..sweep.compute import compute

        while True:
            batch: list[Trial] = []
            while len(batch) < cap:
                trial = self._next(todo)
                if trial is None:
                    break
                batch.append(trial)
            if not batch:
                return
            results = compute(self.session, [self.delayed(t) for t in batch])
            for trial, res in zip(batch, results, strict=True):
                self._done(trial, res)

    def _run_futures(self, todo: list[Trial], cap: int) -> None:
        from distributed import as_completed

        client = self.session.client
        resources = dict(self.search.exp.operation.resources or {}) or None
        inflight: dict[Any, tuple[Any, Trial, int]] = {}
        pending = as_completed([], loop=client.loop)

        def submit(trial: Trial, tries: int = 0) -> None:
            fut = client.compute(self.delayed(trial), resources=resources)
            inflight[fut.key] = (fut, trial, tries)
            pending.add(fut)

        def fill() -> None:
            while len(inflight) < cap:
                trial = self._next(todo)
                if trial is None:
                    return
                submit(trial)

        try:
            fill()
            for fut in pending:  # a new trial is asked as soon as one finishes
                _, trial, tries = inflight.pop(fut.key)
                if fut.status == "finished":
                    self._done(trial, fut.result())
                elif tries == 0:  # e.g. its worker died: the journals keep finished runs
                    submit(trial, 1)
                else:
                    self._done(trial, fut.exception())
                fill()
        except BaseException:
            client.cancel([f for f, _, _ in inflight.values()])
            raise

    def tally(self) -> None:
        """The sweep's success/failed counts (on a cluster, from the task summaries)."""
        if not self.session.distributed:
            return
        ok = [r for r in self.summaries if not isinstance(r, BaseException)]
        counts = self.search.sweep.counts
        counts.success = sum(int(r[SUCCESS].sum()) for r in ok)
        counts.failed = sum(int(r[FAILED].sum()) for r in ok)
