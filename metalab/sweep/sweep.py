"""``metalab.run``: plan, skip what is done, map partitions on a Dask scheduler, keep records."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._interrupt import sweep_interrupted
from ..errors import ExecutorError, ExperimentError
from ..executors.base import Executor, Session
from ..experiment import Experiment
from ..provenance import Collector, check_source_changed, environment
from ..store import Store
from .progress import Counts, JournalPoller, ProgressDisplay

if TYPE_CHECKING:
    import pandas as pd

    from ..results.results import Results


_SHOWN_DASHBOARDS: set[str] = set()


def _new_sweep_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a sweep runs (main thread only): SIGTERM acts like Ctrl-C, and a second
    Ctrl-C or SIGTERM exits at once (status 130) instead of waiting for the clean-up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def handler(signum: int, frame: Any) -> None:
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


def plan_todo(
    exp: Experiment, store: Store, *, resume: bool, retry_failed: bool
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """All run descriptors, the ones to execute now (with attempt numbers), and skipped count."""
    import pyarrow as pa
    import pyarrow.compute as pc

    plan = exp.plan()
    todo = plan
    store.check_metric_files()  # damaged stepped metrics: their runs run again
    status = store.status_table()
    if status.num_rows:
        # Arrow compute on the id columns: no Python strings for a million runs.
        if resume:
            done = status
            if retry_failed:
                done = status.filter(pc.equal(status.column("status"), "success"))
            damaged = store.check_artifacts(done)  # artifact files lost: run again
            if damaged:
                done = done.filter(
                    pc.invert(
                        pc.is_in(
                            done.column("run_id"), value_set=pa.array(sorted(damaged), pa.string())
                        )
                    )
                )
            is_done = pc.is_in(pa.array(plan["run_id"]), value_set=done.column("run_id"))
            todo = plan[~is_done.to_numpy(zero_copy_only=False)]
        pos = pc.index_in(pa.array(todo["run_id"]), value_set=status.column("run_id"))
        prev = pc.take(status.column("attempt"), pos).fill_null(0)
        attempt = pc.add(prev.cast(pa.int32()), 1).to_numpy(zero_copy_only=False)
        todo = todo.assign(attempt=attempt)
    skipped = len(plan) - len(todo)
    return plan, todo.reset_index(drop=True), skipped


def _ship_code_by_value(exp: Experiment) -> None:
    """Make workers that cannot import the operation's module unpickle it by value."""
    import importlib.util

    import cloudpickle

    for obj in (exp.operation.func, type(exp.context)):
        modname = getattr(obj, "__module__", None)
        if not modname or modname in ("__main__", "builtins") or modname.startswith("metalab"):
            continue
        mod = sys.modules.get(modname)
        spec = importlib.util.find_spec(modname) if mod is None else mod.__spec__
        origin = getattr(spec, "origin", None) or ""
        installed = any(
            origin.startswith(p)
            for p in sys.path
            if p and ("site-packages" in p or "dist-packages" in p)
        )
        if mod is not None and not installed:
            with contextlib.suppress(ValueError):
                cloudpickle.register_pickle_by_value(mod)


def _compute(
    session: Session,
    parts: list[Any],
    display: ProgressDisplay,
    poller: JournalPoller | None,
    resources: dict[str, float] | None = None,
) -> list[Any]:
    """Compute every partition; returns their summaries (or exceptions).

    On a cluster, ``resources`` (the operation's) restrict the tasks to workers that
    offer them, and a watchdog raises :class:`ExecutorError` when no usable worker is
    connected for ``session.worker_timeout_s``.
    """
    import dask

    if not session.distributed:
        kwargs: dict[str, Any] = {"scheduler": session.get}
        if session.num_workers:
            kwargs["num_workers"] = session.num_workers
        return list(dask.compute(*parts, **kwargs))

    from distributed import as_completed

    client = session.client
    with warnings.catch_warnings():
        # The context travels in the store payload, so graphs stay small; keep quiet anyway.
        warnings.filterwarnings("ignore", message=".*[Ll]arge graph.*")
        futures = client.compute(parts, resources=resources or None)
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    resubmitted: set[int] = set()
    watchdog = None
    if session.worker_timeout_s is not None:
        from .watchdog import WorkerWatchdog

        watchdog = WorkerWatchdog(
            client,
            session.worker_timeout_s,
            resources=resources,
            diagnose=session.diagnose,
            on_fail=lambda: client.cancel(list(futures)),
        ).start()
    try:
        ac = as_completed(futures, loop=client.loop)
        for fut in ac:
            if watchdog is not None and watchdog.error is not None:
                raise watchdog.error  # no usable worker: the futures were cancelled
            i = index[fut.key]
            res = None
            if fut.status == "finished":
                try:
                    res = fut.result()
                except Exception:  # its worker died before the result was fetched
                    res = None
            if res is not None:
                results[i] = res
                if poller is not None:
                    poller.final[i] = (int(res["success"].sum()), int(res["failed"].sum()))
            else:
                try:
                    exc = fut.exception()
                except Exception as e:  # cancelled: its inputs were lost with a worker
                    exc = e
                if i not in resubmitted:
                    # e.g. KilledWorker: a new task picks up where the journals stop.
                    resubmitted.add(i)
                    new = client.compute(parts[i], retries=0, resources=resources or None)
                    index[new.key] = i
                    ac.add(new)
                    futures.append(new)
                else:
                    results[i] = exc
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        if watchdog is not None:
            watchdog.stop()
    return results


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
    timeout: float | None = None,
) -> Results:
    """Run every (params, replicate) of ``experiment`` and return its :class:`Results`.

    Parameters
    ----------
    executor
        Where partitions run: in-process by default; ``ProcessExecutor(max_workers=N)``,
        ``ThreadExecutor``, ``DaskExecutor(client | cluster | address)``, ...
    store
        Store folder; default ``./runs/<experiment name>``.
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
    timeout
        Seconds one run may take. Each run then executes in a child process that is
        killed when it overruns; the run is recorded with status ``"timeout"`` (error
        type ``Timeout``) and the sweep goes on. Works on every executor. ``None``
        (default) runs operations directly in the worker, with no time limit.

    Examples
    --------
    >>> result = metalab.run(exp)  # doctest: +SKIP
    >>> print(result.table())  # doctest: +SKIP
    """
    from ..results.results import Results
    from .partition import SweepTask, execute_partition, summary_meta
    from .planning import to_dask

    if not isinstance(experiment, Experiment):
        raise ExperimentError(f"run() takes a metalab.Experiment, got {type(experiment).__name__}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ExperimentError(f"retries must be an int >= 0, got {retries!r}")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
    ):
        raise ExperimentError(
            f"timeout must be a number of seconds > 0 (or None for no limit), got {timeout!r}"
        )
    exe = _resolve_executor(executor)
    # The raw value goes to Store.open, which refuses "" (Path("") would be the cwd).
    path = store if store is not None else Path("runs") / experiment.name
    st = Store.open(path, create=True)
    prov = Collector(experiment.operation)  # git calls run while the sweep is planned
    st.ensure_manifest({**experiment.manifest(), "provenance": environment()})
    st.recover_journals()
    st.clean_temp_files()

    plan, todo, skipped = plan_todo(experiment, st, resume=resume, retry_failed=retry_failed)
    if resume:
        check_source_changed(st, experiment.operation, plan["run_id"])
    sweep = _new_sweep_id()
    sweep_info: dict[str, Any] = {
        "sweep": sweep,
        "started": time.time(),
        "experiment": experiment.name,
        "experiment_version": experiment.version,
        "operation": experiment.operation.name,
        "operation_version": experiment.operation.version,
        "source_hash": experiment.operation.source_hash,
        "executor": repr(exe),
        "planned": len(plan),
        "to_run": len(todo),
        "skipped": skipped,
        "provenance": prov.result(),
    }
    st.write_sweep(sweep, sweep_info)
    counts = Counts(skipped=skipped)
    status = "finished"
    payload: Path | None = None
    signals = contextlib.ExitStack()
    signals.enter_context(_sigterm_as_interrupt())  # also covers the clean-up below
    try:
        if len(todo):
            with exe.session() as session:
                task = SweepTask(
                    operation=experiment.operation,
                    store_root=str(st.root),
                    sweep=sweep,
                    seed_base=experiment.seeds.base,
                    retries=retries,
                    capture_output=capture_output,
                    timeout=None if timeout is None else float(timeout),
                    on_run=None if session.distributed else counts.add,
                )
                context: Any = experiment.context
                poller = None
                resources: dict[str, float] = {}
                if session.distributed:
                    from .shipping import ship

                    _ship_code_by_value(experiment)
                    # Once into the shared store, read once per worker process (not per
                    # task, not through the scheduler, and still there for replacements).
                    payload = st.layout.sweeps / f"{sweep}.payload"
                    context = ship(payload, experiment.operation, context)
                    task = dataclasses.replace(task, operation=None)
                    resources = dict(experiment.operation.resources)
                    poller = JournalPoller(st.layout.journal, sweep)
                    link = session.dashboard_link
                    if link and link not in _SHOWN_DASHBOARDS:  # once per cluster
                        _SHOWN_DASHBOARDS.add(link)
                        print(f"metalab: Dask dashboard at {link}", file=sys.stderr)
                ddf = to_dask(todo, n_workers=session.n_workers, partition_size=partition_size)
                out = ddf.map_partitions(
                    execute_partition,
                    task,
                    context,
                    meta=summary_meta(),
                    enforce_metadata=False,
                    align_dataframes=False,
                )
                parts = out.to_delayed()
                display = ProgressDisplay(
                    len(todo),
                    counts,
                    enabled=progress,
                    label=experiment.name,
                    poll=poller.poll if poller else None,
                )
                with display:
                    results = _compute(session, parts, display, poller, resources)
                errors = [r for r in results if isinstance(r, BaseException)]
                if session.distributed:
                    ok = [r for r in results if not isinstance(r, BaseException)]
                    counts.success = sum(int(r["success"].sum()) for r in ok)
                    counts.failed = sum(int(r["failed"].sum()) for r in ok)
                if errors:
                    status = "incomplete"
                    raise ExecutorError(
                        f"{len(errors)} of {len(parts)} partitions could not run "
                        f"(first error: {type(errors[0]).__name__}: {errors[0]}); completed runs "
                        f"are kept, run again with resume=True to finish the sweep"
                    ) from errors[0]
    except ExecutorError:
        status = "incomplete"
        raise
    except KeyboardInterrupt:
        status = "interrupted"
        raise sweep_interrupted(experiment.name, str(st.root), counts.done) from None
    finally:
        try:
            if payload is not None:
                with contextlib.suppress(OSError):
                    payload.unlink()
            st.recover_journals(sweep=sweep, dead_only=True)
            st.remove_done_markers(sweep)
            with contextlib.suppress(OSError):
                st.compact()
            sweep_info.update(
                ended=time.time(), status=status, success=counts.success, failed=counts.failed
            )
            with contextlib.suppress(OSError):
                st.write_sweep(sweep, sweep_info)
        finally:
            signals.close()
    return Results([st], run_ids=plan["run_id"])
