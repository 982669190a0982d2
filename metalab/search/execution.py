"""Running trials on the session: futures on a cluster, direct calls in-process.

A trial is one partition of the sweep (its configuration x the replicates without a
record) run by the sweep's own :func:`~metalab.sweep.partition.run_partition`; the task
returns each run's status and objective value, so the driver never reads them back.
Its journal stays as the trial's records (``SweepTask.fold=False``) and the driver
folds the journals of finished trials into one Parquet file every :data:`FOLD_S`
seconds (or :data:`FOLD_EVERY` trials) and at the end (see
:mod:`metalab.search.folding`).

On a ``distributed`` client each trial is one future; as soon as one finishes its
result is told and a new trial is asked (``cap`` trials running, and by default one
more per worker asked ahead and queued, see :meth:`TrialRunner.ahead`).  In-process, a
sequential search calls the partition function directly (no Dask graph per trial);
threads compute rounds of ``cap`` trials.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..store.records import FAILED, PRUNED, SUCCESS
from .folding import Folder

if TYPE_CHECKING:
    from ..executors.base import Session
    from ..store.journal import JournalWriter
    from ..store.layout import Layout
    from ..sweep.partition import SweepTask
    from ..sweep.shipping import Payload
    from .driver import Search, Trial

#: One run's outcome as a trial task returns it: run id, status, objective value.
Outcome = tuple[str, str, float | None]
#: Fold the journals of finished trials into Parquet after this many trials...
FOLD_EVERY = 256
#: ... or after this many seconds (with a few trials to fold): an fsync'ed file per fold
#: stays rare for fast trials, and readers (pruners) find few journals for slow ones.
FOLD_S = 10.0
FOLD_MIN = 8


def _value(metrics: dict[str, Any] | None, metric: str) -> float | None:
    v = (metrics or {}).get(metric)
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def execute_trial(
    cols: dict[str, list[Any]],
    task: SweepTask,
    payload: Payload,
    number: int,
    metric: str,
) -> tuple[list[Outcome], list[str]]:
    """One trial's runs as partition ``number`` of the sweep (the task on a worker).

    Returns the outcomes of the runs it executed, and the run ids an earlier attempt
    at the trial finished (their values are in the store).
    """
    return _summary(run_attempt(cols, task, payload, number), metric)


def run_attempt(
    cols: dict[str, list[Any]],
    task: SweepTask,
    payload: Payload,
    number: int,
    layout: Layout | None = None,
    journal: JournalWriter | None = None,
) -> Any:
    """Run the trial's partition; the finished attempt (its outcomes, its journal).
    ``journal``: one shared by the trials its driver runs (no file per trial)."""
    from ..sweep.partition import run_partition

    if layout is None:
        from ..store.layout import Layout

        layout = Layout(Path(task.store_root))
    trials = [number] * len(cols["run_id"])
    return run_partition(layout, task, payload, number, cols, trials, journal)


def _summary(attempt: Any, metric: str) -> tuple[list[Outcome], list[str]]:
    runs = [(o[0], o[1], _value(o[4], metric)) for o in attempt.outcomes]
    return runs, list(attempt.done_before)


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
            definition=sweep.definition,
            on_run=None if session.distributed else sweep.counts.add,
            fold=False,
            fresh=not session.distributed,  # only a cluster retries a trial's task
        )
        self.folder = Folder(search.store, sweep.sweep_id, search.ledger)
        self.errors: list[BaseException] = []
        self.read: dict[int, list[Any]] = {}  # trial -> the journals _result read
        self.attempts = 0
        self.on_told: Any = None  # called after each trial is told (the progress bar)

    def _ship(self) -> Payload:
        from ..sweep.shipping import Inline, ship, ship_code_by_value

        sweep = self.search.sweep
        op, context = sweep.experiment.operation, sweep.experiment.context
        if not self.session.distributed:
            return Inline(op, context)
        ship_code_by_value(op, context)
        sweep.payload_path = sweep.store.layout.sweeps / f"{sweep.sweep_id}.payload"
        return ship(sweep.payload_path, op, context)

    def args(self, trial: Trial) -> tuple[Any, ...]:
        """The arguments of :func:`execute_trial` for the trial's runs without a record."""
        return (
            self.search.columns(trial),
            self.task,
            self.payload,
            trial.number,
            self.search.source.metric,
        )

    def _next(self, todo: list[Trial]) -> Trial | None:
        """The next trial to run: a stored one first, else a new one (None: budget spent)."""
        s = self.search
        while True:
            if todo:
                trial = todo.pop(0)
            elif len(s.trials) < s.source.n_trials:
                trial = s.new_trial()
                if len(s.trials) == s.source.n_trials:
                    # The ledger is complete: it reaches the disk while the last trials
                    # run (on a cluster, the driver waits then), not in the final fold.
                    s.ledger.sync()
            else:
                return None
            if s.finished(trial):  # proposed before: its runs are done, tell again
                self._tell(trial)
                continue
            return trial

    def _tell(self, trial: Trial) -> None:
        self.search.tell(trial)
        if self.on_told is not None:
            self.on_told()

    def _done(
        self, trial: Trial, result: tuple[list[Outcome], list[str]], attempt: Any = None
    ) -> None:
        """Note the trial's outcomes, tell it; ``attempt``: run here, its records in memory."""
        runs, earlier = result
        s = self.search
        for rid, status, value in runs:
            s.outcomes[rid] = (status, value, 1)
            if self.session.distributed:
                s.sweep.counts.add(SUCCESS if status in (SUCCESS, PRUNED) else FAILED)
        if attempt is None or earlier:  # its records are read from its journals
            self.folder.finished(trial.number, self.read.pop(trial.number, None))
        else:
            self.folder.keep(attempt)
        if earlier:  # an earlier attempt ran them (a worker died): their values are stored
            s.read_outcomes(earlier)
            for rid in earlier:
                status = s.outcomes.get(rid, (FAILED, None, 1))[0]
                s.sweep.counts.add(SUCCESS if status in (SUCCESS, PRUNED) else FAILED)
        if s.finished(trial):
            self._tell(trial)
        pending = self.folder.pending
        if pending >= FOLD_EVERY or (pending >= FOLD_MIN and self.folder.age() >= FOLD_S):
            self.folder.fold()

    def _failed(self, trial: Trial, exc: BaseException) -> None:
        """The trial's task could not run (twice): its runs stay without a record."""
        from ..store.atomic import is_disk_full

        if is_disk_full(exc):
            raise exc
        self.errors.append(exc)
        self.folder.finished(trial.number, self.read.pop(trial.number, None))

    def run(self, todo: list[Trial], cap: int) -> None:
        """Run the stored trials ``todo`` then new ones until ``n_trials``."""
        try:
            if self.session.distributed:
                self._run_futures(todo, cap)
            elif cap == 1:
                self._run_direct(todo)
            else:
                self._run_rounds(todo, cap)
        finally:
            self.folder.fold()

    def _run_direct(self, todo: list[Trial]) -> None:
        """Trials one after another in this process, sharing a journal until a fold puts
        their records in Parquet (a file per trial cost more than a no-op trial's run)."""
        metric = self.search.source.metric
        layout = self.search.store.layout
        journal: JournalWriter | None = None
        try:
            while (trial := self._next(todo)) is not None:
                if journal is None:
                    journal = self._journal(trial.number)
                cols = self.search.columns(trial)
                attempt = run_attempt(cols, self.task, self.payload, trial.number, layout, journal)
                self._done(trial, _summary(attempt, metric), attempt)
                if not self.folder.pending:  # folded: every trial of the journal is in Parquet
                    journal.discard()
                    journal = None
            self.folder.fold()
            if journal is not None:
                journal.discard()
                journal = None
        finally:
            if journal is not None:  # an error: its runs stay there for the next run()
                journal.close()

    def _journal(self, number: int) -> JournalWriter:
        from ..store.journal import DESCRIPTORS, JournalWriter

        task = self.task
        return JournalWriter(
            self.search.store.layout.journal,
            sweep=task.sweep,
            part=number,
            columns={k: [] for k in DESCRIPTORS},
            worker=f"local:{os.getpid()}",
            flush_every=task.flush_every,
            definition=task.definition,
        )

    def _run_rounds(self, todo: list[Trial], cap: int) -> None:
        from dask.delayed import delayed

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
            tasks = [
                delayed(execute_trial, pure=False, traverse=False)(*self.args(t)) for t in batch
            ]
            for trial, res in zip(batch, compute(self.session, tasks), strict=True):
                self._done(trial, res)

    def _run_futures(self, todo: list[Trial], cap: int) -> None:
        from distributed import as_completed

        client = self.session.client
        resources = dict(self.search.exp.operation.resources or {}) or None
        inflight: dict[Any, tuple[Any, Trial, int]] = {}
        pending = as_completed([], loop=client.loop)
        limit = cap + self.ahead(cap)

        def submit(trial: Trial, tries: int = 0) -> None:
            key = f"metalab-trial-{self.task.sweep}-{trial.number}-{self.attempts}"
            self.attempts += 1
            fut = client.submit(
                execute_trial, *self.args(trial), key=key, pure=False, resources=resources
            )
            inflight[fut.key] = (fut, trial, tries)
            pending.add(fut)

        def fill() -> None:
            while len(inflight) < limit:
                trial = self._next(todo)
                if trial is None:
                    return
                submit(trial)

        def cancel() -> None:  # also called from the watchdog's thread: a snapshot
            client.cancel([f for f, _, _ in list(inflight.values())])

        watchdog = self._watchdog(resources, cancel)
        try:
            fill()
            for fut in pending:  # a new trial is asked as soon as one finishes
                done = [fut]
                while pending.has_ready():  # finished together: all told before asking
                    done.append(next(pending))
                for f in done:
                    if watchdog is not None and watchdog.error is not None:
                        raise watchdog.error  # no usable worker: the trials were cancelled
                    _, trial, tries = inflight.pop(f.key)
                    result = self._result(f, trial)
                    if result is not None:
                        self._done(trial, result)
                    elif tries == 0:  # e.g. its worker died: the journals keep finished runs
                        submit(trial, 1)
                    else:
                        self._failed(trial, _exception(f))
                fill()
        except BaseException:
            cancel()
            raise
        finally:
            if watchdog is not None:
                watchdog.stop()

    def ahead(self, cap: int) -> int:
        """Trials asked ahead and queued behind the running ones on a cluster.

        By default (``batch_size=None``) each worker holds one more trial than it runs,
        so it starts the next the moment one ends instead of idling while the driver
        hears of it, tells the sampler, asks it again and submits (about 15-25 ms
        through the scheduler).  The sampler then proposes with up to ``2 * cap - 1``
        results outstanding instead of ``cap - 1``.  None for a sequential search (its
        sampler sees every result before the next proposal) or an explicit batch size.
        """
        if self.search.sequential or self.search.source.batch_size is not None:
            return 0
        return cap

    def _result(self, fut: Any, trial: Trial) -> tuple[list[Outcome], list[str]] | None:
        """A finished trial's outcomes (None: its task failed).

        Read from its journals in the store (closed before the task returned): the
        worker's answer would cost one more round trip through the scheduler while the
        worker idles; the future's result is the fallback.
        """
        if fut.status != "finished":
            return None
        from ..store.journal import journal_prefix, list_journals
        from ..store.reader import read_journal

        metric = self.search.source.metric
        found: dict[str, Outcome] = {}
        layout = self.search.store.layout
        journals = []
        for path in list_journals(layout.journal, journal_prefix(self.task.sweep, trial.number)):
            j = read_journal(layout, path)  # None: a damaged header, quarantined
            if j is not None:
                journals.append(j)
                for o in j.outcomes:
                    found[o[0]] = (o[0], o[1], _value(o[4], metric))
        self.read[trial.number] = journals  # folded later without reading them again
        need = [r for r in trial.run_ids if r not in self.search.outcomes]
        if all(r in found for r in need):
            return [found[r] for r in need], []
        try:
            result: tuple[list[Outcome], list[str]] = fut.result()
        except Exception:  # its worker died before the result was fetched
            return None
        return result

    def _watchdog(self, resources: dict[str, float] | None, cancel: Any) -> Any:
        """Fail when no usable worker is connected for ``session.worker_timeout_s``."""
        if self.session.worker_timeout_s is None:
            return None
        from ..sweep.watchdog import WorkerWatchdog

        return WorkerWatchdog(
            self.session.client,
            self.session.worker_timeout_s,
            resources=resources,
            diagnose=self.session.diagnose,
            on_fail=cancel,
        ).start()

    def check(self) -> None:
        """Raise :class:`~metalab.ExecutorError` when some trial's task could not run."""
        if not self.errors:
            return
        from ..errors import ExecutorError

        first = self.errors[0]
        raise ExecutorError(
            f"{len(self.errors)} trials could not run (first error: "
            f"{type(first).__name__}: {first}); finished trials are kept, run again "
            "with resume=True to finish the search"
        ) from first


def _exception(fut: Any) -> BaseException:
    try:
        exc: BaseException = fut.exception()
    except Exception as e:  # cancelled: its inputs were lost with a worker
        exc = e
    return exc
