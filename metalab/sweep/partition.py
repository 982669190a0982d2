"""What runs inside each Dask partition task: execute runs, journal them, write Parquet.

This module is imported on workers; it must stay light and picklable.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import time_ns
from typing import Any

from ..capture import Capture
from ..capture.serializers import install_serializers, user_serializers
from ..operation import ALLOWED_ARGUMENTS, Operation
from ..seeds import SeedBundle
from ..store.journal import HOST, Journal, JournalWriter, journal_prefix, list_journals
from ..store.layout import Layout
from ..store.records import WORKER_DIED, error_outcome, now_us

SUMMARY_COLUMNS = ("success", "failed", "skipped")


@dataclass
class SweepTask:
    """Everything a partition task needs besides its descriptors and the context."""

    operation: Operation
    store_root: str
    sweep: str
    seed_base: int
    retries: int = 0
    capture_output: bool = False
    flush_every: int = 4
    max_worker_deaths: int = 2
    #: Seconds a run may take; runs then execute in a killable child (see timeout.py).
    timeout: float | None = None
    # In-process executors only: called with each run's status (never pickled to workers).
    on_run: Callable[[str], None] | None = field(default=None, repr=False)
    #: Artifact formats registered on the driver (metalab.register_serializer), for workers.
    serializers: tuple[Any, ...] = field(default_factory=user_serializers, repr=False)

    def __dask_tokenize__(self) -> str:
        return f"metalab-sweep-{self.sweep}"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["on_run"] = None
        return state


def _worker_address() -> str:
    if "distributed" in sys.modules:  # never import distributed just to ask
        try:
            from distributed import get_worker

            return str(get_worker().address)
        except ValueError:
            pass
    return f"local:{os.getpid()}"


_CALLERS: dict[tuple[str, ...], Callable[..., Any]] = {}


def _caller(wants: tuple[str, ...]) -> Callable[..., Any]:
    """A function ``(func, params, seeds, capture, context)`` passing exactly ``wants``.

    Built once per argument set, so a run pays no per-call keyword assembly. ``wants``
    only ever holds names from ``ALLOWED_ARGUMENTS`` (checked at decoration time).
    """
    fn = _CALLERS.get(wants)
    if fn is None:
        assert set(wants) <= set(ALLOWED_ARGUMENTS), wants
        args = ", ".join(f"{w}={w}" for w in wants)
        fn = eval(f"lambda func, params, seeds, capture, context: func({args})")
        _CALLERS[wants] = fn
    return fn


def run_one(
    task: SweepTask,
    run_id: str,
    params: dict[str, Any],
    seeds: SeedBundle,
    context: Any,
) -> list[Any]:
    """Execute one run (with retries) and return its outcome line."""
    op = task.operation
    call = _caller(op.wants)
    func = op.func
    tries = 0
    while True:
        cap = Capture(run_id, task.store_root)
        t0 = time_ns() // 1000
        try:
            if task.capture_output:
                from ..capture.output import captured_output

                with captured_output(cap):
                    ret = call(func, params, seeds, cap, context)
            else:
                ret = call(func, params, seeds, cap, context)
            if ret is not None:
                cap._absorb_return(ret)
        except Exception as exc:
            t1 = time_ns() // 1000
            if tries < task.retries:
                tries += 1
                continue
            extra = cap._extra() or {}
            if tries:
                extra["retries"] = tries
            return error_outcome(
                run_id,
                "failed",
                t0,
                t1,
                type(exc).__qualname__,
                str(exc),
                traceback=traceback.format_exc(),
                metrics=cap.scalars,
                extra=extra,
            )
        t1 = time_ns() // 1000
        extra = cap._extra()
        if tries:
            extra = extra or {}
            extra["retries"] = tries
        return [run_id, "success", t0, t1, cap.scalars, extra]


def _previous_attempts(
    layout: Layout, task: SweepTask, part: int, order: list[str]
) -> tuple[list[Journal], dict[str, str], dict[str, int]]:
    """Journals of earlier attempts at this partition (Dask retried it after a worker died).

    Returns them, the status of each run they completed, and how often each run was the
    one in flight when a worker died (the first unfinished run, or an explicit start mark).
    """
    prev = [Journal(p) for p in list_journals(layout.journal, journal_prefix(task.sweep, part))]
    done: dict[str, str] = {}
    for j in prev:
        done.update((o[0], o[1]) for o in j.outcomes)
    deaths: dict[str, int] = {}
    for j in prev:
        finished = {o[0] for o in j.outcomes}
        suspects = [r for r in j.started if r not in finished]
        if not suspects:
            suspects = [r for r in order if r not in done][:1]
        for r in suspects[-1:]:
            deaths[r] = deaths.get(r, 0) + 1
    return prev, done, deaths


def execute_partition(pdf: Any, task: SweepTask, context: Any, partition_info: Any = None) -> Any:
    """Run every descriptor of one partition; returns a one-row summary frame."""
    import pandas as pd

    part = int(partition_info["number"]) if partition_info else 0
    layout = Layout(Path(task.store_root))
    if task.serializers:
        install_serializers(task.serializers)
    finished = _read_done_marker(layout, task, part)
    if finished is not None:  # Dask recomputed a partition whose result died with a worker
        return pd.DataFrame({k: [int(finished.get(k, 0))] for k in SUMMARY_COLUMNS})
    if getattr(context, "metalab_shipped", False):  # cluster: read once per worker process
        operation, context = context.resolve()
        task = dataclasses.replace(task, operation=operation)
    run_ids = pdf["run_id"].tolist()
    cols = {
        "run_id": run_ids,
        "params": pdf["params"].tolist(),
        "replicate": pdf["replicate"].tolist(),
        "seed": pdf["seed"].tolist(),
        "attempt": pdf["attempt"].tolist(),
    }

    prev, done_before, deaths = _previous_attempts(layout, task, part, run_ids)
    retrying = bool(prev)
    worker = _worker_address()
    journal = JournalWriter(
        layout.journal,
        sweep=task.sweep,
        part=part,
        columns=cols,
        worker=worker,
        flush_every=1 if retrying else task.flush_every,
    )
    outcomes: list[list[Any]] = []
    params_list: list[dict[str, Any]] = []
    bundles: dict[int, SeedBundle] = {}
    on_run = task.on_run
    counts = {"success": 0, "failed": 0, "skipped": 0}
    child = None
    completed = False
    if task.timeout is not None:
        from .timeout import ChildRunner

        child = ChildRunner(task, context)
    try:
        # One json.loads for the whole partition is ~5x cheaper than one per run.
        parsed = json.loads("[" + ",".join(cols["params"]) + "]")
        for run_id, params, rep in zip(run_ids, parsed, cols["replicate"], strict=True):
            if run_id in done_before:
                # Finished by an earlier attempt: still this partition's run, so it counts
                # in the summary (the sweep's success/failed counts come from summaries).
                counts["success" if done_before[run_id] == "success" else "failed"] += 1
                continue
            if deaths.get(run_id, 0) >= task.max_worker_deaths:
                now = now_us()
                out = error_outcome(
                    run_id,
                    "failed",
                    now,
                    now,
                    WORKER_DIED,
                    f"worker died while running this run ({deaths[run_id]} times); it "
                    "probably crashes its process (segfault, os._exit, out of memory)",
                )
            else:
                if retrying:
                    journal.mark_started(run_id)
                if child is not None:
                    out = child.run(run_id, params, rep)
                else:
                    bundle = bundles.get(rep)
                    if bundle is None:
                        bundle = bundles[rep] = SeedBundle(task.seed_base, (rep,))
                    out = run_one(task, run_id, params, bundle, context)
            journal.append(out)
            outcomes.append(out)
            params_list.append(params)
            counts["success" if out[1] == "success" else "failed"] += 1
            if on_run is not None:
                on_run(out[1])
        completed = True
    finally:
        if child is not None:
            child.close()
        journal.close()
        _fold_to_parquet(
            layout,
            task,
            part,
            prev,
            outcomes,
            params_list,
            cols,
            in_order=not done_before,
            worker=worker,
        )
        if completed and not worker.startswith("local:"):
            _write_done_marker(layout, task, part, counts)
        for j in prev:
            try:
                j.path.unlink()
            except FileNotFoundError:
                pass
        journal.discard()
    return pd.DataFrame({k: [v] for k, v in counts.items()})


def _fold_to_parquet(
    layout: Layout,
    task: SweepTask,
    part: int,
    prev: list[Journal],
    outcomes: list[list[Any]],
    params_list: list[dict[str, Any]],
    cols: dict[str, list[Any]],
    *,
    in_order: bool,
    worker: str,
) -> None:
    """Write the partition's records (this attempt's and earlier attempts') as Parquet."""
    from ..store.reader import concat
    from ..store.records import build_records, build_steps, info_from_columns
    from ..store.store import write_partition

    records, steps = [], []
    for j in prev:  # runs finished by earlier attempts keep their own host, pid and worker
        table, st = j.tables()
        records.append(table)
        steps.append(st)
    if outcomes:
        n = len(outcomes)
        # Without skipped runs the outcomes are a prefix of the partition's rows.
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
                params=params_list,
                aligned=aligned,
                host=HOST,
                pid=os.getpid(),
                worker=worker,
                sweep=task.sweep,
            )
        )
        steps.append(build_steps(outcomes, task.sweep))
    records = [t for t in records if t is not None]
    step_tables = [t for t in steps if t is not None]
    if records:
        write_partition(
            layout,
            f"{task.sweep}-{part:06d}",
            concat(records),
            concat(step_tables) if step_tables else None,
        )


def done_marker(layout: Layout, sweep: str, part: int) -> Path:
    """``journal/<sweep>-<part>.done``: this partition's records are in Parquet."""
    return layout.journal / f"{sweep}-{part:06d}.done"


def _write_done_marker(layout: Layout, task: SweepTask, part: int, counts: dict[str, int]) -> None:
    # A finished partition whose summary is lost with its worker is recomputed by Dask;
    # the marker makes that recomputation return at once instead of running runs again.
    # The driver deletes the markers of its sweep when the sweep ends.
    from ..store.atomic import atomic_write_text

    atomic_write_text(done_marker(layout, task.sweep, part), json.dumps(counts))


def _read_done_marker(layout: Layout, task: SweepTask, part: int) -> dict[str, int] | None:
    try:
        return dict(json.loads(done_marker(layout, task.sweep, part).read_text()))
    except (FileNotFoundError, ValueError):
        return None


def summary_meta() -> Any:
    import pandas as pd

    return pd.DataFrame({k: pd.Series([], dtype="int64") for k in SUMMARY_COLUMNS})
