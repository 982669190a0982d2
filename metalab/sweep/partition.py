"""What runs inside each Dask partition task: execute runs, journal them, write Parquet.

This module is imported on workers; it must stay light and picklable.

A partition task may be an *attempt* among several: when a worker dies, Dask runs the
task again elsewhere, and the new attempt reads the journals the earlier ones left.
Runs they finished are kept (not run again); the run in flight at a death is charged
with it, and a run in flight at ``max_worker_deaths`` deaths is recorded ``failed``
with error type ``WorkerDied`` instead of killing a third worker.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _preemption
from .._interrupt import StopFlag
from ..capture.serializers import install_serializers, user_serializers
from ..store.atomic import is_disk_full, naming_full_disk
from ..store.done_markers import done_marker as done_marker
from ..store.done_markers import read_done_marker, write_done_marker
from ..store.journal import DESCRIPTORS, HOST, Journal, JournalWriter, journal_prefix, list_journals
from ..store.layout import Layout
from ..store.records import FAILED, PRUNED, REQUEUED, SUCCESS
from .one_run import in_this_process, worker_died_outcome
from .remote_task import localized

if TYPE_CHECKING:
    import pandas as pd

    from ..store.remote import Remote
    from .shipping import Payload
    from .timeout import RunFunction

SKIPPED = "skipped"
#: Columns of the one-row frame each partition task returns.
SUMMARY_COLUMNS = (SUCCESS, FAILED, SKIPPED)


@dataclass
class SweepTask:
    """Everything a partition task needs besides its descriptors and the payload."""

    store_root: str
    sweep: str
    seed_base: int
    retries: int = 0
    capture_output: bool = False
    flush_every: int = 4
    max_worker_deaths: int = 2
    #: Seconds a run may take; runs then execute in a killable child (see timeout.py).
    timeout_s: float | None = None
    #: The runs' definition columns (experiment and operation versions, context
    #: fingerprint), written into every record.
    definition: dict[str, str] = field(default_factory=dict)
    # In-process executors only: called with each run's status (never pickled to workers).
    on_run: Callable[[str], None] | None = field(default=None, repr=False)
    #: Set by the driver when the sweep stops (Ctrl-C, an error): no further run starts.
    stop: StopFlag | None = field(default=None, repr=False)
    #: Artifact formats registered on the driver (metalab.register_serializer), for workers.
    serializers: tuple[Any, ...] = field(default_factory=user_serializers, repr=False)
    #: False (a search's trials): the journal is kept as the partition's records and the
    #: driver folds many partitions' journals into one Parquet file (no file per task).
    fold: bool = True
    #: True: no earlier attempt at a partition can exist (a search's trial run by its
    #: driver, in-process), so the journal folder is not searched for one per task.
    fresh: bool = False
    #: A store on a remote filesystem (``store_root`` is then its URL): each partition
    #: runs in a local mirror (see remote_task.py).  Holds no credential in its repr.
    remote: Remote | None = field(default=None, repr=False)
    #: Called after each journal flush (a remote partition's batch uploads; not pickled).
    on_flush: Callable[[], None] | None = field(default=None, repr=False)

    def __dask_tokenize__(self) -> str:
        return f"metalab-sweep-{self.sweep}"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["on_run"] = None
        state["on_flush"] = None
        return state


def _worker_address() -> str:
    if "distributed" in sys.modules:  # never import distributed just to ask
        try:
            from distributed import get_worker

            return str(get_worker().address)
        except ValueError:
            pass
    return f"local:{os.getpid()}"


# -- one partition ----------------------------------------------------------------------


def execute_partition(
    pdf: pd.DataFrame,
    task: SweepTask,
    payload: Payload,
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Run every descriptor of one partition; returns a one-row summary frame."""
    part = int(partition_info["number"]) if partition_info else 0
    with localized(task, part) as (task, _):
        finished = finished_summary(task, part)
        return finished if finished is not None else run_frame(pdf, task, payload, part)


def run_frame(pdf: pd.DataFrame, task: SweepTask, payload: Payload, part: int) -> pd.DataFrame:
    """Run the descriptors ``pdf`` as partition ``part`` (its done marker already
    checked by the caller); returns the one-row summary frame."""
    layout = Layout(Path(task.store_root))
    attempt = run_partition(layout, task, payload, part, _descriptor_columns(pdf), _trials(pdf))
    return _summary(attempt.counts)


def finished_summary(task: SweepTask, part: int) -> pd.DataFrame | None:
    """The summary of partition ``part`` when this sweep already finished it: Dask
    recomputes a task whose result died with its worker, and the runs must not run again
    nor their counts be lost."""
    finished = read_done_marker(Layout(Path(task.store_root)), task.sweep, part)
    if finished is None:
        return None
    return _summary({k: int(finished.get(k, 0)) for k in SUMMARY_COLUMNS})


def run_partition(
    layout: Layout,
    task: SweepTask,
    payload: Payload,
    part: int,
    cols: dict[str, list[Any]],
    trials: list[int] | None = None,
    journal: JournalWriter | None = None,
) -> _Attempt:
    """Run the descriptors ``cols`` as partition ``part``; returns the finished attempt
    (``journal``: one shared by the partitions a driver runs itself, kept open)."""
    if task.serializers:
        install_serializers(task.serializers)
    operation, context = payload.resolve()  # on a cluster: read once per worker process
    execute = in_this_process(task, operation, context)
    child = None
    if task.timeout_s is not None:
        from .timeout import ChildRunner

        child = ChildRunner(
            execute,
            timeout_s=task.timeout_s,
            max_deaths=task.max_worker_deaths,
            artifacts=str(layout.artifacts),
        )
        execute = child.run
    with _preemption.partition_running():  # SIGTERM now lets runs checkpoint first
        attempt = _run_attempt(layout, task, part, (cols, trials), execute, child, journal)
    if attempt.hands_over:
        from distributed import Reschedule

        # Another worker continues the partition (this one got SIGTERM or its run
        # checkpointed when due); the journal left here tells it what is done.
        raise Reschedule()
    return attempt


def _run_attempt(
    layout: Layout,
    task: SweepTask,
    part: int,
    descriptors: tuple[dict[str, list[Any]], list[int] | None],
    execute: Any,
    child: Any,
    journal: JournalWriter | None = None,
) -> _Attempt:
    # A full disk (the journal, an artifact, the Parquet file) ends the task with one
    # StoreError naming the file; what reached the disk before is kept.
    cols, trials = descriptors
    with naming_full_disk(layout.journal):
        attempt = _Attempt(layout, task, part, cols, journal)
        attempt.trials = trials
    with naming_full_disk(attempt.journal.path):
        failed: BaseException | None = None
        try:
            attempt.run_all(execute)
        except BaseException as exc:
            failed = exc
            raise
        finally:
            if child is not None:
                child.close()
            _close(attempt, failed)
    return attempt


def _close(attempt: _Attempt, failed: BaseException | None) -> None:
    """Close the attempt; after a full disk, the first failed write is the one reported."""
    try:
        # A requeued attempt on a worker leaves its journal to the next attempt.
        attempt.close(fold=not attempt.hands_over)
    except OSError as exc:
        if failed is None or not (is_disk_full(exc) and is_disk_full(failed)):
            raise


def _descriptor_columns(pdf: pd.DataFrame) -> dict[str, list[Any]]:
    return {k: pdf[k].tolist() for k in DESCRIPTORS}


def _trials(pdf: pd.DataFrame) -> list[int] | None:
    """A search's trial number of each run (``metalab.optimize``), kept in its record."""
    return pdf["trial"].tolist() if "trial" in pdf.columns else None


def _summary(counts: dict[str, int]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({k: [counts[k]] for k in SUMMARY_COLUMNS})


@functools.cache
def summary_meta() -> pd.DataFrame:
    """The empty summary frame: the ``meta`` of the partition tasks (built once, shared:
    never modify it)."""
    import pandas as pd

    return pd.DataFrame({k: pd.Series([], dtype="int64") for k in SUMMARY_COLUMNS})


def _previous_attempts(
    layout: Layout, sweep: str, part: int, order: list[str]
) -> tuple[list[Journal], dict[str, str], dict[str, int]]:
    """Journals of earlier attempts at this partition (Dask retried it after a worker died).

    Returns them, the status of each run they completed, and how often each run was the
    one in flight when a worker died (the first unfinished run, or an explicit start mark).
    """
    prev = [Journal(p) for p in list_journals(layout.journal, journal_prefix(sweep, part))]
    done: dict[str, str] = {}
    for j in prev:  # a requeued run is not done: it continues from its checkpoint
        done.update((o[0], o[1]) for o in j.outcomes if o[1] != REQUEUED)
    deaths: dict[str, int] = {}
    for j in prev:
        if any(o[1] == REQUEUED for o in j.outcomes):
            continue  # that attempt stopped on purpose (SIGTERM, lifetime): no death
        finished = {o[0] for o in j.outcomes}
        suspects = [r for r in j.started if r not in finished]
        if not suspects:
            suspects = [r for r in order if r not in done][:1]
        for r in suspects[-1:]:
            deaths[r] = deaths.get(r, 0) + 1
    return prev, done, deaths


class _Attempt:
    """One attempt at one partition: its journal, its outcomes, the earlier attempts."""

    def __init__(
        self,
        layout: Layout,
        task: SweepTask,
        part: int,
        cols: dict[str, list[Any]],
        journal: JournalWriter | None = None,
    ):
        self.layout, self.task, self.part, self.cols = layout, task, part, cols
        self.prev, self.done_before, self.deaths = (
            ([], {}, {})
            if task.fresh
            else _previous_attempts(layout, task.sweep, part, cols["run_id"])
        )
        self.worker = _worker_address()
        #: The journal is shared with other partitions (see run_partition): kept open.
        self.shared = journal is not None
        if journal is not None:
            journal.add_columns(cols)
        else:
            journal = JournalWriter(
                layout.journal,
                sweep=task.sweep,
                part=part,
                columns=cols,
                worker=self.worker,
                flush_every=1 if self.prev else task.flush_every,
                definition=task.definition,
            )
            journal.after_flush = task.on_flush
        self.journal = journal
        self.outcomes: list[list[Any]] = []
        self.params: list[dict[str, Any]] = []
        self.counts = dict.fromkeys(SUMMARY_COLUMNS, 0)
        self.completed = False
        #: Stopped early on purpose (SIGTERM, a requeued run): another attempt continues.
        self.requeue = False
        self.trials: list[int] | None = None

    @property
    def hands_over(self) -> bool:
        """Stopped early on a Dask worker: the partition is rescheduled, and the next
        attempt continues from this one's journal (in-process, resume continues it)."""
        return self.requeue and not self.worker.startswith("local:")

    def run_all(self, execute: RunFunction) -> None:
        """Execute the partition's runs in order, journaling each outcome."""
        journal, counts, done_before, deaths = (
            self.journal,
            self.counts,
            self.done_before,
            self.deaths,
        )
        limit = self.task.max_worker_deaths
        on_run, stop = self.task.on_run, self.task.stop
        retrying = bool(self.prev)
        # One json.loads for the whole partition is ~5x cheaper than one per run.
        parsed = json.loads("[" + ",".join(self.cols["params"]) + "]")
        trials = self.trials
        for i, (run_id, params, rep) in enumerate(
            zip(self.cols["run_id"], parsed, self.cols["replicate"], strict=True)
        ):
            if stop is not None and stop.is_set():
                return  # the sweep stopped: what finished is kept, the rest is not started
            if _preemption.sigterm_received():
                self.requeue = True  # this process is going away: start nothing more
                return
            if run_id in done_before:
                # Finished by an earlier attempt: still this partition's run, so it counts
                # in the summary (the sweep's success/failed counts come from summaries).
                counts[SUCCESS if done_before[run_id] == SUCCESS else FAILED] += 1
                continue
            if deaths.get(run_id, 0) >= limit:  # it killed its worker every time it ran
                out = worker_died_outcome(run_id, deaths[run_id])
            else:
                if retrying:  # a death now is charged to this run, not guessed
                    journal.mark_started(run_id)
                out = execute(run_id, params, rep)
            if trials is not None:  # the search's trial number goes into the record
                out[5] = {**(out[5] or {}), "trial": int(trials[i])}
            journal.append(out)
            self.outcomes.append(out)
            self.params.append(params)
            if out[1] == REQUEUED:  # neither done nor failed; nothing more starts here
                self.requeue = True
                return
            counts[SUCCESS if out[1] in (SUCCESS, PRUNED) else FAILED] += 1
            if on_run is not None:
                on_run(out[1])
        self.completed = True

    def close(self, *, fold: bool = True) -> None:
        """Fold this and the earlier attempts into Parquet; remove their journals.

        ``fold=False`` (a requeued attempt on a worker) only closes the journal: the
        next attempt at the partition reads it and folds it with its own.
        """
        if self.shared:  # its outcomes reach the OS; the driver folds and deletes it
            self.journal.flush()
            return
        self.journal.close()
        if not fold:
            return
        if not self.task.fold:  # the journals are the records until the driver folds them
            if not self.outcomes:
                self.journal.discard()
            return
        self._fold_to_parquet()
        if self.completed and not self.worker.startswith("local:"):
            write_done_marker(self.layout, self.task.sweep, self.part, self.counts)
        for j in self.prev:
            try:
                j.path.unlink()
            except FileNotFoundError:
                pass
        self.journal.discard()

    def _fold_to_parquet(self) -> None:
        """Write the partition's records (this attempt's and earlier attempts') as Parquet."""
        from ..store.files import write_partition
        from ..store.reader import concat
        from ..store.records import build_records, build_steps, info_from_columns

        sweep, cols, outcomes = self.task.sweep, self.cols, self.outcomes
        records, steps = [], []
        for j in self.prev:  # runs finished by earlier attempts keep their host, pid, worker
            table, st = j.tables()
            records.append(table)
            steps.append(st)
        if outcomes:
            n = len(outcomes)
            # Without skipped runs the outcomes are a prefix of the partition's rows.
            in_order = not self.done_before
            aligned = (
                {k: cols[k][:n] for k in ("params", "replicate", "seed", "attempt")}
                if in_order
                else None
            )
            info = {} if in_order else info_from_columns(cols)
            records.append(
                build_records(
                    outcomes,
                    info,
                    params=self.params,
                    aligned=aligned,
                    host=HOST,
                    pid=os.getpid(),
                    worker=self.worker,
                    sweep=sweep,
                    definition=self.task.definition,
                )
            )
            steps.append(build_steps(outcomes, sweep))
        tables = [t for t in records if t is not None]
        step_tables = [t for t in steps if t is not None]
        if tables:
            write_partition(
                self.layout,
                f"{sweep}-{self.part:06d}",
                concat(tables),
                concat(step_tables) if step_tables else None,
            )
