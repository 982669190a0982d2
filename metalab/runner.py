"""``metalab.run``: plan, skip what is done, map partitions on a Dask scheduler, keep records."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ExecutorError, ExperimentError, RunInterrupted
from .executors.base import Executor, Session
from .experiment import Experiment
from .progress import Counts, JournalPoller, ProgressDisplay
from .store import Store

if TYPE_CHECKING:
    import pandas as pd

    from .results import Results


def _new_sweep_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while a sweep runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _resolve_executor(executor: Executor | None) -> Executor:
    from .executors import LocalExecutor

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
    plan = exp.plan()
    todo = plan
    status = store.status_table()
    if status.num_rows:
        st = status.to_pandas()
        if resume:
            keep = st["status"] == "success" if retry_failed else st["status"].notna()
            todo = plan[~plan["run_id"].isin(st.loc[keep, "run_id"])]
        prev = todo["run_id"].map(st.set_index("run_id")["attempt"])
        todo = todo.assign(attempt=(prev.fillna(0).astype("int64") + 1).astype("int32"))
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
            origin.startswith(p) for p in sys.path if p and ("site-packages" in p or
                                                              "dist-packages" in p)
        )
        if mod is not None and not installed:
            with contextlib.suppress(ValueError):
                cloudpickle.register_pickle_by_value(mod)


def _compute(
    session: Session,
    parts: list[Any],
    display: ProgressDisplay,
    poller: JournalPoller | None,
) -> list[Any]:
    """Compute every partition; returns their summaries (or exceptions)."""
    import dask

    if not session.distributed:
        kwargs: dict[str, Any] = {"scheduler": session.get}
        if session.num_workers:
            kwargs["num_workers"] = session.num_workers
        return list(dask.compute(*parts, **kwargs))

    from distributed import as_completed

    client = session.client
    futures = client.compute(parts)
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    resubmitted: set[int] = set()
    try:
        ac = as_completed(futures, loop=client.loop)
        for fut in ac:
            i = index[fut.key]
            if fut.status == "finished":
                res = fut.result()
                results[i] = res
                if poller is not None:
                    poller.final[i] = (int(res["success"].sum()), int(res["failed"].sum()))
            else:
                exc = fut.exception()
                if i not in resubmitted and fut.status != "cancelled":
                    # e.g. KilledWorker: a new task picks up where the journals stop.
                    resubmitted.add(i)
                    new = client.compute(parts[i], retries=0)
                    index[new.key] = i
                    ac.add(new)
                    futures.append(new)
                else:
                    results[i] = exc
    except BaseException:
        client.cancel(futures)
        raise
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

    Examples
    --------
    >>> result = metalab.run(exp)  # doctest: +SKIP
    >>> print(result.table())  # doctest: +SKIP
    """
    from ._plan import to_dask
    from ._worker import SweepTask, execute_partition, summary_meta
    from .results import Results

    if not isinstance(experiment, Experiment):
        raise ExperimentError(
            f"run() takes a metalab.Experiment, got {type(experiment).__name__}"
        )
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ExperimentError(f"retries must be an int >= 0, got {retries!r}")
    exe = _resolve_executor(executor)
    path = Path(store) if store is not None else Path("runs") / experiment.name
    st = Store.open(path, create=True)
    st.ensure_manifest(experiment.manifest())
    st.recover_journals()
    st.clean_temp_files()

    plan, todo, skipped = plan_todo(experiment, st, resume=resume, retry_failed=retry_failed)
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
    }
    st.write_sweep(sweep, sweep_info)
    counts = Counts(skipped=skipped)
    status = "finished"
    try:
        if len(todo):
            with _sigterm_as_interrupt(), exe.session() as session:
                task = SweepTask(
                    operation=experiment.operation,
                    store_root=str(st.root),
                    sweep=sweep,
                    seed_base=experiment.seeds.base,
                    retries=retries,
                    capture_output=capture_output,
                    on_run=None if session.distributed else counts.add,
                )
                context: Any = experiment.context
                poller = None
                if session.distributed:
                    _ship_code_by_value(experiment)
                    context = session.client.scatter(context, broadcast=True, hash=False)
                    poller = JournalPoller(st.layout.journal, sweep)
                    link = session.dashboard_link
                    if progress and link:
                        print(f"metalab: Dask dashboard at {link}", file=sys.stderr)
                ddf = to_dask(todo, n_workers=session.n_workers, partition_size=partition_size)
                out = ddf.map_partitions(
                    execute_partition, task, context, meta=summary_meta(),
                    enforce_metadata=False, align_dataframes=False,
                )
                parts = out.to_delayed()
                display = ProgressDisplay(
                    len(todo), counts, enabled=progress, label=experiment.name,
                    poll=poller.poll if poller else None,
                )
                with display:
                    results = _compute(session, parts, display, poller)
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
    except KeyboardInterrupt as exc:
        status = "interrupted"
        raise RunInterrupted(
            f"sweep of {experiment.name!r} interrupted; completed runs are kept in {st.root}. "
            f"Resume with: metalab.run(exp, store={str(st.root)!r}, resume=True) "
            f"(or `metalab run MODULE:EXPERIMENT`)",
            store=str(st.root),
            done=counts.done,
        ) from exc
    finally:
        st.recover_journals(sweep=sweep, dead_only=True)
        with contextlib.suppress(OSError):
            st.compact()
        sweep_info.update(ended=time.time(), status=status, success=counts.success,
                          failed=counts.failed)
        with contextlib.suppress(OSError):
            st.write_sweep(sweep, sweep_info)
    return Results([st], run_ids=plan["run_id"])
