"""``metalab.run``: a sweep's life as a short list of named steps over one :class:`Sweep`.

1. check the options (:class:`SweepOptions`) and the executor;
2. open the store (:meth:`Sweep.open`): manifest, journals left by dead sweeps;
3. plan (:meth:`Sweep.plan`): every run, minus those already done when resuming;
4. record the sweep (:meth:`Sweep.record`) in ``sweeps/``;
5. execute (:meth:`Sweep.execute`): ship the operation and context, build the graph of
   partition tasks, compute it (:mod:`metalab.sweep.compute`);
6. finish (:meth:`Sweep.finish`), whatever ended the sweep: fold journals into Parquet,
   compact, record how the sweep ended.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _preemption
from .._interrupt import StopFlag, sweep_interrupted
from ..errors import ExecutorError, ExperimentError, RunInterrupted
from ..executors.base import Executor, Session
from ..experiment import Experiment
from ..provenance import Collector, check_source_changed, environment
from ..store import Store
from ..store.atomic import is_disk_full
from ..store.journal import HOST
from ..store.records import (
    CONTEXT_FINGERPRINT,
    EXPERIMENT_VERSION,
    FAILED,
    OPERATION_VERSION,
    SUCCESS,
    SWEEP_FINISHED,
    SWEEP_INCOMPLETE,
    SWEEP_INTERRUPTED,
)
from .progress import Counts, JournalPoller, ProgressDisplay

if TYPE_CHECKING:
    import pandas as pd

    from ..results.results import Results
    from ..store.sweep_files import Heartbeat
    from .partition import SweepTask
    from .planning import Stamp
    from .shipping import Payload


_SHOWN_DASHBOARDS: set[str] = set()


def _new_sweep_id() -> str:
    """A unique id whose names sort by start time, to the millisecond (UTC)."""
    now = time.time()
    ms = int(now * 1000) % 1000
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}{ms:03d}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a sweep runs (main thread only): SIGTERM acts like Ctrl-C, and a second
    Ctrl-C or SIGTERM exits at once (status 130) instead of waiting for the clean-up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []
    _preemption.reset()

    def handler(signum: int, frame: Any) -> None:
        if signum == signal.SIGTERM and not seen and _preemption.checkpointing():
            # A run that asks capture.checkpoint_due() is running here: let it
            # checkpoint and return (requeued); the sweep then stops as interrupted.
            seen.append(signum)
            _preemption.note_sigterm()
            return
        if seen:
            sys.stderr.write(
                "\nmetalab: second interrupt, exiting now; records written so far "
                "are kept (resume=True continues)\n"
            )
            sys.stderr.flush()
            os._exit(130)
        seen.append(signum)
        sys.stderr.write(
            "\nmetalab: interrupted, stopping the sweep and keeping what is "
            "written (press Ctrl-C again to exit at once)\n"
        )
        sys.stderr.flush()
        raise KeyboardInterrupt(f"signal {signum}")

    old_term = signal.signal(signal.SIGTERM, handler)
    old_int = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)


# -- step 1: the options ----------------------------------------------------------------


def _seconds(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ExperimentError(
            f"{name} must be a number of seconds > 0 (or None for no limit), got {value!r}"
        )
    return float(value)


@dataclass(frozen=True)
class SweepOptions:
    """The checked options of one :func:`run` call (see there)."""

    resume: bool = True
    progress: bool = False
    partition_size: int | None = None
    retries: int = 0
    retry_failed: bool = True
    capture_output: bool = False
    timeout_s: float | None = None
    wait: bool = False
    #: A remote store's filesystem options (credentials, endpoint): never shown.
    storage_options: dict[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.wait, bool):
            raise ExperimentError(f"wait must be True or False, got {self.wait!r}")
        retries = self.retries
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ExperimentError(f"retries must be an int >= 0, got {retries!r}")
        _seconds("timeout_s", self.timeout_s)
        if self.partition_size is not None:
            from ..descriptors import partition_bounds

            partition_bounds(1, 1, self.partition_size)  # its check, before any work

    @staticmethod
    def timeout_from(timeout: float | None, timeout_s: float | None) -> float | None:
        """The run time limit from ``timeout_s=`` or its old name ``timeout=``."""
        if timeout is not None and timeout_s is not None:
            raise ExperimentError(
                f"run() got timeout_s={timeout_s!r} and timeout={timeout!r}: give only "
                "timeout_s= (seconds one run may take); timeout= is its old name"
            )
        if timeout is not None:
            return _seconds("timeout", timeout)
        return _seconds("timeout_s", timeout_s)


def _check_experiment(experiment: object) -> Experiment:
    if not isinstance(experiment, Experiment):
        raise ExperimentError(f"run() takes a metalab.Experiment, got {type(experiment).__name__}")
    return experiment


def _resolve_executor(executor: Executor | None) -> Executor:
    from ..executors import LocalExecutor

    if executor is None:
        return LocalExecutor()
    if not isinstance(executor, Executor):
        raise ExperimentError(
            f"executor must be a metalab executor (LocalExecutor(), ProcessExecutor(max_workers=4),"
            f" DaskExecutor(client), ...), got {executor!r}"
        )
    return executor


def _show_dashboard(session: Session) -> None:
    link = session.dashboard_link
    if link and link not in _SHOWN_DASHBOARDS:  # once per cluster
        _SHOWN_DASHBOARDS.add(link)
        print(f"metalab: Dask dashboard at {link}", file=sys.stderr)


# -- steps 2 to 6: the sweep ------------------------------------------------------------


@dataclass
class Sweep:
    """One call of :func:`run`: what it runs, where, and how far it got."""

    experiment: Experiment
    executor: Executor
    store: Store
    options: SweepOptions
    provenance: Collector
    sweep_id: str = field(default_factory=_new_sweep_id)
    #: Every run of the experiment, and the ones this sweep executes.
    planned: pd.DataFrame = field(init=False)
    todo: pd.DataFrame = field(init=False)
    counts: Counts = field(default_factory=Counts)
    #: How the sweep ended (recorded by :meth:`finish`).
    status: str = SWEEP_FINISHED
    info: dict[str, Any] = field(default_factory=dict)
    #: The shipped operation and context (cluster sessions), removed by :meth:`finish`.
    payload_path: Path | None = None
    #: Stops the partition tasks still running when the sweep ends early.
    stop: StopFlag = field(default_factory=StopFlag)
    #: Touches the sweep file while the sweep runs (see ``store/sweep_files.py``).
    heartbeat: Heartbeat | None = None
    _task: SweepTask | None = field(default=None, init=False, repr=False)
    #: The store's record files when the sweep was planned (see ``planning.store_stamp``).
    stamp: Stamp = field(default_factory=frozenset, repr=False)

    @classmethod
    def open(
        cls,
        experiment: Experiment,
        executor: Executor,
        store: str | os.PathLike[str],
        options: SweepOptions,
    ) -> Sweep:
        """Open (or create) the store and tidy what dead sweeps left in it."""
        st = Store.open(store, create=True, storage_options=options.storage_options)
        provenance = Collector(experiment.operation)  # git calls run while the sweep is planned
        st.ensure_manifest({**experiment.manifest(), "provenance": environment()})
        st.recover_journals()
        st.clean_temp_files()
        st.sync()
        return cls(experiment, executor, st, options, provenance)

    def plan(self) -> None:
        """Every run, and those to execute now (all of them without ``resume``)."""
        from .planning import plan_todo, store_stamp

        exp, opts = self.experiment, self.options
        self.stamp = store_stamp(self.store.layout)  # taken first: what planning saw
        self.planned, self.todo, skipped = plan_todo(
            exp, self.store, resume=opts.resume, retry_failed=opts.retry_failed
        )
        if opts.resume:
            check_source_changed(self.store, exp.operation, self.planned["run_id"])
        self.counts = Counts(skipped=skipped)

    @property
    def definition(self) -> dict[str, str]:
        """The definition columns every record of this sweep carries."""
        exp = self.experiment
        return {
            EXPERIMENT_VERSION: exp.version,
            OPERATION_VERSION: exp.operation.version,
            CONTEXT_FINGERPRINT: exp.context.fingerprint,
        }

    def record(self) -> None:
        """Write the sweep's record (``sweeps/<sweep id>``), completed by :meth:`finish`;
        note its definition in the manifest's history; start its heartbeat."""
        from ..store.sweep_files import Heartbeat

        exp = self.experiment
        self.info = {
            "sweep": self.sweep_id,
            "started": time.time(),
            "experiment": exp.name,
            **self.definition,
            "operation": exp.operation.name,
            "host": HOST,
            "pid": os.getpid(),
            "source_hash": exp.operation.source_hash,
            "executor": repr(self.executor),
            "planned": len(self.planned),
            "to_run": len(self.todo),
            "skipped": self.counts.skipped,
        }
        if self.provenance.ready():  # else its git calls go on beside the runs: see finish
            self.info["provenance"] = self.provenance.result()
        self.store.write_sweep(self.sweep_id, self.info)
        self.store.note_definition(
            exp.manifest(),
            sweep=self.sweep_id,
            started=self.info["started"],
            planned=len(self.planned),
        )
        path = self.store.layout.sweeps / f"{self.sweep_id}.json"
        self.heartbeat = Heartbeat(path).start()
        self.store.sync()

    def execute(self) -> None:
        """Ship, build the partition tasks and compute them (if any run is to do): under
        leases shared with the other drivers of this sweep (see :mod:`.cohort`)."""
        from .cohort import SharedRounds

        if not len(self.todo):
            return
        try:
            with self.executor.sweep_session() as session:
                payload, poller = self._ship(session)
                display = ProgressDisplay(
                    len(self.todo),
                    self.counts,
                    enabled=self.options.progress,
                    label=self.experiment.name,
                    poll=poller.poll if poller else None,
                )
                try:
                    with display:
                        rounds = SharedRounds(self, session, payload, wait=self.options.wait)
                        summaries = rounds.run()
                except BaseException:
                    self.stop.set()  # before the session closes: tasks in flight stop too
                    raise
                self._tally(session, summaries)
        except ExecutorError:
            self.status = SWEEP_INCOMPLETE
            raise

    def _ship(self, session: Session) -> tuple[Payload, JournalPoller | None]:
        """The operation and context as the partition tasks get them, and a journal poller."""
        from .shipping import Inline, ShippedRef, ship, ship_code_by_value

        op, context = self.experiment.operation, self.experiment.context
        if not session.distributed:
            return Inline(op, context), None
        ship_code_by_value(op, context)
        # Once into the shared store, read once per worker process (not per task, not
        # through the scheduler, and still there for replacements).
        self.payload_path = self.store.layout.sweeps / f"{self.sweep_id}.payload"
        ref = ship(self.payload_path, op, context)
        if self.store.mirror is not None:  # workers read it from the bucket
            self.store.sync()
            ref = ShippedRef(
                f"sweeps/{self.payload_path.name}", ref.digest, self.store.mirror.remote
            )
        _show_dashboard(session)
        return ref, JournalPoller(self.store.layout.journal, self.sweep_id)

    def task(self, session: Session) -> SweepTask:
        """What every partition task of this sweep gets (built once per sweep)."""
        from .partition import SweepTask

        if self._task is not None:
            return self._task
        opts = self.options
        if session.distributed:  # workers in other processes look for a marker file
            self.stop = StopFlag(str(self.store.layout.journal / f".tmp-stop-{self.sweep_id}"))
        self._task = SweepTask(
            store_root=self.store.location,
            remote=self.store.mirror.remote if self.store.mirror is not None else None,
            sweep=self.sweep_id,
            seed_base=self.experiment.seeds.base,
            retries=opts.retries,
            capture_output=opts.capture_output,
            timeout_s=opts.timeout_s,
            definition=self.definition,
            on_run=None if session.distributed else self.counts.add,
            stop=self.stop,
        )
        return self._task

    def _tally(self, session: Session, summaries: list[Any]) -> None:
        """Count the runs (cluster: from the summaries); fail if a partition could not run."""
        lost = ExecutorError("its summary was lost with its worker")  # gathered twice, in vain
        summaries = [lost if r is None else r for r in summaries]
        errors = [r for r in summaries if isinstance(r, BaseException)]
        if session.distributed:
            ok = [r for r in summaries if not isinstance(r, BaseException)]
            self.counts.success = sum(int(r[SUCCESS].sum()) for r in ok)
            self.counts.failed = sum(int(r[FAILED].sum()) for r in ok)
        if errors:
            raise ExecutorError(
                f"{len(errors)} of {len(summaries)} partitions could not run "
                f"(first error: {type(errors[0]).__name__}: {errors[0]}); completed runs "
                f"are kept, run again with resume=True to finish the sweep"
            ) from errors[0]

    def interrupted(self) -> RunInterrupted:
        """The error that tells how to resume this sweep after Ctrl-C or SIGTERM."""
        self.status = SWEEP_INTERRUPTED
        root = self.store.location
        return sweep_interrupted(self.experiment.name, root, self.counts.done)

    def finish(self) -> None:
        """Whatever ended the sweep: fold its journals, compact, record how it ended."""
        st = self.store
        if self.heartbeat is not None:
            self.heartbeat.stop()
        st.refresh()  # a remote store: what the workers uploaded
        if self.payload_path is not None:
            with contextlib.suppress(OSError):
                self.payload_path.unlink()
        try:
            st.recover_journals(sweep=self.sweep_id, dead_only=True)
        except OSError as exc:  # the journals stay, and the next run() folds them
            if not is_disk_full(exc):
                raise
        st.remove_done_markers(self.sweep_id)
        with contextlib.suppress(OSError):
            st.compact()
        c = self.counts
        if self.info and "provenance" not in self.info:
            self.info["provenance"] = self.provenance.result()
        self.info.update(ended=time.time(), status=self.status, success=c.success, failed=c.failed)
        with contextlib.suppress(OSError):
            st.write_sweep(self.sweep_id, self.info)
        st.sync()

    def results(self) -> Results:
        """The :class:`~metalab.Results` of every planned run."""
        from ..results.results import Results

        return Results([self.store], run_ids=self.planned["run_id"])


# -- the front door ---------------------------------------------------------------------


def run(
    experiment: Experiment,
    *,
    executor: Executor | None = None,
    store: str | os.PathLike[str] | None = None,
    resume: bool = True,
    progress: bool = False,
    partition_size: int | None = None,
    retries: int = 0,
    retry_failed: bool = True,
    capture_output: bool = False,
    timeout_s: float | None = None,
    timeout: float | None = None,
    wait: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> Results:
    """Run every (params, replicate) of ``experiment`` and return its :class:`Results`.

    Each run's record (status, metrics, artifacts, timing, error) is written to the store
    as the run ends.  A failing operation does not stop the sweep: its run is recorded
    with status ``"failed"``.

    Parameters
    ----------
    experiment
        What to run: an operation, a context, parameters and seeds.
    executor
        Where partitions run: in-process by default; ``ProcessExecutor(max_workers=N)``,
        ``ThreadExecutor``, ``DaskExecutor(client | cluster | address)``,
        ``SlurmExecutor(...)``, ``PBSExecutor(...)``.
    store
        Store folder, or a URL (``s3://bucket/prefix``, ``gs://``, ``az://``,
        ``memory://``; see docs/stores.md); default ``./runs/<experiment name>``.
    resume
        Skip runs that already have a successful record (default). ``False`` runs all again.
    progress
        Show a progress bar (needs ``metalab[rich]``).
    partition_size
        Runs per Dask task; by default chosen from the number of runs and workers.
    retries
        Re-run a raising run up to this many times before recording it as failed.
    retry_failed
        With ``resume=True``, also re-run runs whose latest record failed (default).
    capture_output
        Keep each run's stdout, stderr and logging records in its log.
    timeout_s
        Seconds one run may take. Each run then executes in a child process that is
        killed when it overruns; the run is recorded with status ``"timeout"`` (error
        type ``Timeout``) and the sweep goes on. Works on every executor. ``None``
        (default) runs operations directly in the worker, with no time limit.
    timeout
        The old name of ``timeout_s`` (still accepted; give one of the two).
    wait
        Several drivers (``metalab.run`` or ``metalab run``, e.g. the tasks of an
        ``sbatch --array``) started on one store share the sweep: each claims partitions
        with leases in the store and runs only those, so every run executes once.  A
        driver returns when no partition is left to claim (default); with ``wait=True``
        it returns when every partition is done, and takes over the partitions of a
        driver that died (after its lease expires: ``$METALAB_LEASE_S``, 60 s).
    storage_options
        For a store on object storage (``store="s3://bucket/prefix"``): options of its
        fsspec filesystem (``{"key": ..., "secret": ..., "endpoint_url": ...}``); by
        default credentials come from the environment and the provider's config files.
        Never written into the store.

    Returns
    -------
    Results
        The records of every run of ``experiment`` in the store (also those skipped
        because they were done already).

    Raises
    ------
    ExperimentError
        ``experiment`` is not an :class:`~metalab.Experiment`, or an option is invalid.
    ExecutorError
        The executor could not run every partition (no usable worker, start-up failure);
        completed runs are kept, ``resume=True`` finishes the sweep.
    RunInterrupted
        Ctrl-C or SIGTERM stopped the sweep; completed runs are kept, ``resume=True``
        continues it.

    Examples
    --------
    >>> result = metalab.run(exp)  # doctest: +SKIP
    >>> on_4 = metalab.ProcessExecutor(max_workers=4)  # doctest: +SKIP
    >>> result = metalab.run(exp, executor=on_4, timeout_s=60)  # doctest: +SKIP
    >>> print(result.table())  # doctest: +SKIP
    """
    from ..store.leases import lease_seconds

    exp = _check_experiment(experiment)
    lease_seconds()  # a bad $METALAB_LEASE_S is named before any work
    options = SweepOptions(
        resume=resume,
        progress=progress,
        partition_size=partition_size,
        retries=retries,
        retry_failed=retry_failed,
        capture_output=capture_output,
        timeout_s=SweepOptions.timeout_from(timeout, timeout_s),
        wait=wait,
        storage_options=storage_options,
    )
    # The raw value goes to Store.open, which refuses "" (Path("") would be the cwd).
    path = store if store is not None else Path("runs") / exp.name
    sweep = Sweep.open(exp, _resolve_executor(executor), path, options)
    drive = getattr(exp.params, "drive", None)  # an adaptive source (metalab.optimize)
    if drive is not None and sweep.store.mirror is not None:
        raise ExperimentError(
            f"metalab.optimize() cannot record into a store on object storage yet "
            f"({sweep.store.location}); run the search into a local or shared folder"
        )
    if drive is None:
        sweep.plan()
        sweep.record()
    with _sigterm_as_interrupt():  # also covers the clean-up
        try:
            drive(sweep) if drive is not None else sweep.execute()
            if _preemption.sigterm_received():  # the runs checkpointed: now stop
                raise KeyboardInterrupt("SIGTERM")
        except KeyboardInterrupt:
            raise sweep.interrupted() from None
        finally:
            sweep.finish()
    return sweep.results()
