"""Reading a store: Parquet record files plus live journals, deduplicated by run id."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .journal import Journal, list_journals
from .layout import Layout
from .paths import plain_files, quarantine
from .records import STEP_SCHEMA

log = logging.getLogger("metalab.store")


class DamagedFileWarning(UserWarning):
    """A store file could not be read and was moved to the quarantine folder."""


def parquet_files(folder: Path) -> list[Path]:
    """Complete Parquet files of a store folder (temp files are ignored, links quarantined)."""
    return plain_files(folder, ".parquet")


def concat(tables: Sequence[pa.Table], schema: pa.Schema | None = None) -> pa.Table:
    """Concatenate tables whose columns differ (missing columns become null)."""
    tables = [t for t in tables if t is not None]
    if not tables:
        return schema.empty_table() if schema is not None else pa.table({})
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Columns with conflicting types (int in one file, text in another) become text.
        types: dict[str, set[pa.DataType]] = {}
        for t in tables:
            for f in t.schema:
                types.setdefault(f.name, set()).add(f.type)
        bad = {k for k, v in types.items() if len(v) > 1}
        fixed = []
        for t in tables:
            for name in bad & set(t.column_names):
                i = t.schema.get_field_index(name)
                t = t.set_column(i, name, pc.cast(t.column(name), pa.string()))
            fixed.append(t)
        return pa.concat_tables(fixed, promote_options="permissive")


def _read_file(path: Path, columns: Sequence[str] | None, filter: Any) -> pa.Table:
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    cols = None if columns is None else [c for c in columns if c in names]
    if filter is not None:
        return pq.read_table(path, columns=cols, filters=filter, schema=pf.schema_arrow)
    return pf.read(columns=cols)


def read_parquet_folder(
    layout: Layout,
    folder: Path,
    *,
    columns: Sequence[str] | None = None,
    filter: Any = None,
) -> list[pa.Table]:
    """Read every Parquet file of a folder; damaged files are quarantined, not returned."""
    for _attempt in range(5):
        tables = []
        vanished = False
        for f in parquet_files(folder):
            try:
                tables.append(_read_file(f, columns, filter))
            except FileNotFoundError:
                vanished = True  # compacted away by another process: list again
                break
            except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
                if not f.exists():
                    vanished = True
                    break
                quarantine(layout, f, str(exc).splitlines()[0][:200])
                sibling = layout.records / f.name
                if folder == layout.metrics and sibling.exists():
                    # Written together by one partition: its runs must run again to get
                    # their stepped metrics back, so their records go aside too.
                    quarantine(layout, sibling, "its stepped-metrics file was damaged")
        if not vanished:
            return tables
    raise OSError(f"store folder {folder} keeps changing while being read")


def journal_tables(
    layout: Layout, sweep: str | None = None
) -> tuple[list[pa.Table], list[pa.Table]]:
    """Record and step tables of the journals present now (runs completed so far)."""
    recs, steps = [], []
    prefix = f"{sweep}-" if sweep else ""
    for path in list_journals(layout.journal, prefix):
        records, st = Journal(path).tables()
        if records is not None:
            recs.append(records)
        if st is not None:
            steps.append(st)
    return recs, steps


def may_have_duplicates(run_ids: pa.ChunkedArray | pa.Array) -> bool:
    """False when every run id is distinct (exact); True when some may repeat.

    Run ids are 32 hex characters: a 64-bit key mixed from all of them is sorted
    in numpy (~10x faster than a hash-based distinct count on strings).  Equal keys only
    mean "maybe", and the caller then deduplicates exactly.
    """
    import numpy as np

    arr = run_ids.combine_chunks() if isinstance(run_ids, pa.ChunkedArray) else run_ids
    if len(arr) < 2:
        return False
    if arr.null_count or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return True
    offsets = np.frombuffer(
        arr.buffers()[1], dtype=np.int32 if pa.types.is_string(arr.type) else np.int64
    )[arr.offset : arr.offset + len(arr) + 1]
    if not (np.diff(offsets) == 32).all():
        return pc.count_distinct(arr).as_py() != len(arr)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    words = data.view(np.uint64).reshape(-1, 4)
    keys = words[:, 0] * np.uint64(0x9E3779B97F4A7C15)
    for i, mul in ((1, 0xC2B2AE3D27D4EB4F), (2, 0x165667B19E3779F9), (3, 0xD6E8FEB86659FD93)):
        keys = (keys ^ (keys >> np.uint64(29))) + words[:, i] * np.uint64(mul)
    keys = np.sort(keys)
    return bool((keys[1:] == keys[:-1]).any())


def dedupe_latest(table: pa.Table) -> pa.Table:
    """Keep one record per run id: the one that ended last (the latest attempt)."""
    if table.num_rows == 0:
        return table
    run_ids = table.column("run_id")
    if not may_have_duplicates(run_ids):
        return table
    import numpy as np

    ended = table.column("ended_at").cast(pa.int64()).to_numpy(zero_copy_only=False)
    codes = pc.dictionary_encode(run_ids).combine_chunks().indices.to_numpy(zero_copy_only=False)
    order = np.lexsort((ended, codes))  # by run, then by end time
    last = np.ones(len(order), dtype=bool)
    sorted_codes = codes[order]
    last[:-1] = sorted_codes[1:] != sorted_codes[:-1]
    keep = np.sort(order[last])
    return table.take(pa.array(keep))


def read_records(
    layout: Layout, *, columns: Sequence[str] | None = None, filter: Any = None
) -> pa.Table:
    """All current run records of a store (Parquet + journals), one row per run id."""
    need = None
    if columns is not None:
        need = list(dict.fromkeys([*columns, "run_id", "ended_at"]))
    # Journals first: a partition finishing meanwhile writes its Parquet file before
    # deleting its journal, so its runs are then seen in one place or both, never neither.
    jrecs, _ = journal_tables(layout)
    tables = read_parquet_folder(layout, layout.records, columns=need, filter=filter)
    for t in jrecs:
        if filter is not None:
            try:
                t = t.filter(filter)
            except (pa.ArrowInvalid, KeyError):
                t = t.slice(0, 0)
        if need is not None:
            t = t.select([c for c in need if c in t.column_names])
        tables.append(t)
    table = dedupe_latest(concat(tables))
    if columns is not None:
        table = table.select([c for c in columns if c in table.column_names])
    return table


def read_steps(layout: Layout, *, filter: Any = None) -> pa.Table:
    """The long table of stepped metrics (run_id, name, step, value, time, sweep)."""
    _, jsteps = journal_tables(layout)  # journals first (see read_records)
    tables = read_parquet_folder(layout, layout.metrics, filter=filter)
    for t in jsteps:
        tables.append(t.filter(filter) if filter is not None else t)
    return concat(tables, STEP_SCHEMA)
