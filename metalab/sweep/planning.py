"""Planning a sweep: which runs to execute now (resume), and their partitions.

:func:`plan_todo` lists every run of the experiment and keeps those without a usable
record; the partition policy lives in :mod:`metalab.descriptors` (re-exported here).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..store.plan_cache import params_json_at
from ..store.records import PRUNED, REQUEUED, SUCCESS

if TYPE_CHECKING:
    import pyarrow as pa

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
    """The planned run ids (a frame with a ``run_id`` column, in plan order), the run
    descriptors to execute now (with attempt numbers), and how many runs were skipped.

    A large plan's run ids come from the store's plan cache when it holds a valid copy
    (see :mod:`metalab.store.plan_cache`); then only the runs to execute get their params.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..context import check_context
    from ..store import plan_cache

    check_context(exp.context)  # a watched value (e.g. a DataFrame) changed in place?
    ids = plan_cache.load(store.layout, exp)
    full = None
    if ids is None:
        full = exp.plan()
        ids = pa.array(full["run_id"], pa.string())
        if len(full) == len(exp):  # all distinct: the cache's positions are the plan's
            plan_cache.save(store.layout, exp, ids)
    store.check_metric_files()  # damaged stepped metrics: their runs run again
    status = store.status_table(ids)  # the plan's ids are distinct
    todo_pos = None  # positions in the plan of the runs to execute; None: all of them
    if status.num_rows and resume:
        # A requeued run is never done: it continues from its checkpoint.
        done = _where(status, pc.not_equal(status.column("status"), REQUEUED))
        if retry_failed:
            done = _where(status, pc.is_in(status.column("status"), pa.array([SUCCESS, PRUNED])))
        damaged = store.check_artifacts(done)  # artifact files lost: run again
        if damaged:
            lost = pa.array(sorted(damaged), pa.string())
            done = done.filter(pc.invert(pc.is_in(done.column("run_id"), value_set=lost)))
        todo_pos = np.flatnonzero(~is_in(ids, done.column("run_id")))
    todo = descriptors(exp, full, ids, todo_pos)
    if status.num_rows and len(todo):
        pos = pc.index_in(pa.array(todo["run_id"]), value_set=status.column("run_id"))
        prev = pc.take(status.column("attempt"), pos).fill_null(0)
        attempt = pc.add(prev.cast(pa.int32()), 1).to_numpy(zero_copy_only=False)
        todo = todo.assign(attempt=attempt)
    planned = pd.DataFrame({"run_id": pd.Series(ids, dtype=pd.StringDtype("pyarrow"))})
    return planned, todo, len(ids) - len(todo)


def _where(table: pa.Table, mask: pa.ChunkedArray) -> pa.Table:
    """The rows of ``table`` where ``mask`` is true; ``table`` itself when every row is
    (a finished store: copying a million run ids would cost as much as reading them)."""
    import pyarrow.compute as pc

    if mask.null_count == 0 and pc.all(mask).as_py():
        return table
    return table.filter(mask)


def is_in(ids: pa.Array, values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Which ``ids`` are among ``values`` (exact), as a boolean numpy array.

    Run ids are matched by a 64-bit key (hashing integers is several times faster than
    hashing strings), and every match is confirmed on all 32 bytes of both ids; ids
    whose key matched a different id are looked up again on the strings.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..store.plan_cache import id_keys, id_words

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    wp, wv = id_words(ids), id_words(values)
    if wp is None or wv is None or not len(ids) or not len(values):
        return np.asarray(pc.is_in(ids, value_set=values), dtype=bool)
    if len(wp) == len(wv) and np.array_equal(wp, wv):
        # The records hold the plan's ids in plan order (one sweep did every run, its
        # files listed in partition order): one comparison of the bytes, no hashing.
        return np.ones(len(ids), dtype=bool)
    pos = key_positions(id_keys(wp), id_keys(wv))
    found: np.ndarray = pos >= 0
    matched = np.take(wv, np.where(found, pos, 0), axis=0)
    if found.all() and np.array_equal(wp, matched):  # every id found (a finished sweep)
        return found
    diff = wp ^ matched
    same: np.ndarray = found & ((diff[:, 0] | diff[:, 1] | diff[:, 2] | diff[:, 3]) == 0)
    again = np.flatnonzero(found & ~same)
    if len(again):  # a key shared by two different ids: the strings decide
        same[again] = np.asarray(pc.is_in(ids.take(again), value_set=values), dtype=bool)
    return same


def key_positions(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each of ``keys``, a position in ``values`` holding the same key, or -1.

    Both are sorted and merged (``searchsorted`` over sorted queries): ~17% faster than
    a pandas hash index on a million 64-bit keys, and repeated values need no special
    case (any one of their positions is returned).
    """
    if not len(values):
        return np.full(len(keys), -1, dtype=np.int64)
    by_value = np.argsort(values)
    ordered = values[by_value]
    by_key = np.argsort(keys)
    wanted = keys[by_key]
    at = np.minimum(np.searchsorted(ordered, wanted), len(ordered) - 1)
    hit = ordered[at] == wanted
    pos = np.full(len(keys), -1, dtype=np.int64)
    pos[by_key[hit]] = by_value[at[hit]]
    return pos


def descriptors(
    exp: Experiment, full: pd.DataFrame | None, ids: pa.Array, positions: np.ndarray | None
) -> pd.DataFrame:
    """The run descriptors (run_id, params, replicate, seed, attempt) at ``positions`` of
    the plan (all when None), as :meth:`Experiment.plan` builds them.

    ``full`` is the computed plan, or None when the run ids came from the cache: then the
    params are built for the selected runs only (one by one for a few, else in bulk).
    """
    import pyarrow as pa

    if full is not None:
        return full if positions is None else full.iloc[positions].reset_index(drop=True)
    n, reps = len(ids), exp.seeds.replicates
    pos = np.arange(n) if positions is None else positions
    configs, replicate = np.divmod(pos, reps)
    if len(pos) > n // 8:  # many: the bulk path (one C-level join per configuration)
        every = pa.array(list(exp.params.iter_json()), pa.string())
        params = every.take(pa.array(configs))
    else:
        params = pa.array([params_json_at(exp.params, int(c)) for c in configs], pa.string())
    seeds = np.asarray([exp.seeds.seed_int(r) for r in range(reps)], dtype="int64")
    text = pd.StringDtype("pyarrow")
    return pd.DataFrame(
        {
            "run_id": pd.Series(ids.take(pa.array(pos)), dtype=text),
            "params": pd.Series(params, dtype=text),
            "replicate": replicate.astype("int32"),
            "seed": seeds[replicate],
            "attempt": np.ones(len(pos), dtype="int32"),
        }
    )
