"""Planning a sweep: which runs to execute now (resume), and their partitions.

:func:`plan_todo` lists every run of the experiment and keeps those without a usable
record; the partition policy lives in :mod:`metalab.descriptors` (re-exported here).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..store.records import PRUNED, REQUEUED, SUCCESS

if TYPE_CHECKING:
    import pandas as pd

    from ..experiment import Experiment
    from ..store import Store
    from ..store.layout import Layout

#: What a store's records look like at one moment (see :func:`store_stamp`).
Stamp = frozenset[tuple[str, int, int]]


def store_stamp(layout: Layout) -> Stamp:
    """Name, size and mtime of every file in ``records/`` and ``journal/``: when this is
    unchanged, so are the store's records (a journal grows with each run it records)."""
    out = set()
    for folder in (layout.records, layout.journal):
        try:
            with os.scandir(folder) as it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except FileNotFoundError:  # folded or compacted meanwhile: a change
                        continue
                    out.add((f"{folder.name}/{e.name}", st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            continue
    return frozenset(out)


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
            # A requeued run is never done: it continues from its checkpoint.
            done = status.filter(pc.not_equal(status.column("status"), REQUEUED))
            if retry_failed:
                done = status.filter(pc.is_in(status.column("status"), pa.array([SUCCESS, PRUNED])))
            damaged = store.check_artifacts(done)  # artifact files lost: run again
            if damaged:
                lost = pa.array(sorted(damaged), pa.string())
                done = done.filter(pc.invert(pc.is_in(done.column("run_id"), value_set=lost)))
            is_done = pc.is_in(pa.array(plan["run_id"]), value_set=done.column("run_id"))
            todo = plan[~is_done.to_numpy(zero_copy_only=False)]
        pos = pc.index_in(pa.array(todo["run_id"]), value_set=status.column("run_id"))
        prev = pc.take(status.column("attempt"), pos).fill_null(0)
        attempt = pc.add(prev.cast(pa.int32()), 1).to_numpy(zero_copy_only=False)
        todo = todo.assign(attempt=attempt)
    skipped = len(plan) - len(todo)
    return plan, todo.reset_index(drop=True), skipped
