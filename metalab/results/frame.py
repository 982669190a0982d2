"""``Results.frame``: a lazy Dask frame over a snapshot of the stores.

One partition per group of Parquet row groups whose statistics may match the filters,
plus one per store for its live journals.  Deduplication needs every record of a run,
wherever it sits, so one small task first finds the superseded rows of all partitions
(:func:`_losers`, reading three columns) and each partition drops its own.

That first pass reads every run id, about as many bytes as the rest of a narrow store.
It is skipped for a store whose files prove that no run id appears twice
(:func:`_provably_distinct`: each file's footer says its run ids are distinct, its
Parquet statistics bound them, the bounds of the files do not overlap, and no live
journal).  Every partition of such a store checks the promise on what it reads.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import StoreError
from ..store.layout import Layout
from ..store.reader import dedupe_latest, quarantine_parquet, unreadable
from ..store.records import ATTEMPT, DISTINCT_KEY, ENDED_AT, RUN_ID
from .naming import EXPERIMENT
from .query import Clause, filter_exprs, prunes_file
from .scan import FORMAT, FS, Scan, conform

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd

    from ..store.remote import Remote

__all__ = ["lazy_frame", "to_frame_pandas"]

_NULLABLE: dict[pa.DataType, Any] = {}


def _types_mapper(t: pa.DataType) -> Any:
    import pandas as pd

    if not _NULLABLE:
        _NULLABLE.update(
            {
                pa.int8(): pd.Int8Dtype(),
                pa.int16(): pd.Int16Dtype(),
                pa.int32(): pd.Int32Dtype(),
                pa.int64(): pd.Int64Dtype(),
                pa.uint8(): pd.UInt8Dtype(),
                pa.uint16(): pd.UInt16Dtype(),
                pa.uint32(): pd.UInt32Dtype(),
                pa.uint64(): pd.UInt64Dtype(),
                pa.bool_(): pd.BooleanDtype(),
            }
        )
    return _NULLABLE.get(t)


def to_frame_pandas(table: pa.Table, names: dict[str, str]) -> pd.DataFrame:
    """Arrow -> pandas with nullable integer/boolean dtypes (the same whatever the nulls)."""
    df = table.to_pandas(types_mapper=_types_mapper)
    return df.rename(columns=names)


@dataclass(frozen=True)
class _Part:
    store: int
    path: str | None  # None: the journal snapshot of the store
    row_groups: tuple[int, ...] = ()
    #: The bucket of a remote store (``path`` is then an object key); None: local.
    remote: Remote | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True)
class _Reading:
    """What every partition of one frame reads with (shipped once to the workers)."""

    schema: pa.Schema
    columns: list[str]
    clauses: list[Clause]
    conflicts: set[str]
    names: dict[str, str]
    labels: dict[int, str | None]
    #: Stores whose files prove their run ids distinct: no deduplication pass.
    distinct: frozenset[int] = frozenset()


def _part_table(
    part: _Part, journals: dict[int, pa.Table], schema: pa.Schema, columns: list[str], push: Any
) -> pa.Table:
    if part.path is None:
        j = conform(journals[part.store], schema)
        if push is not None:
            j = j.filter(push)
        return j.select(columns)
    fs = FS if part.remote is None else part.remote.arrow()
    frag = FORMAT.make_fragment(part.path, filesystem=fs, row_groups=list(part.row_groups))
    try:
        return frag.to_table(schema=schema, columns=columns, filter=push)
    except FileNotFoundError as exc:
        raise StoreError(
            2,
            f"{part.path} was compacted away after this frame was made; take a new "
            "frame (results = metalab.load_results(path); results.frame)",
            part.path,
        ) from exc
    except PermissionError as exc:
        raise unreadable(Path(part.path), exc) from exc
    except (pa.ArrowException, OSError) as exc:  # a page failed its checksum
        path = Path(part.path)
        reason = str(exc).splitlines()[0][:200]
        if part.remote is not None:
            part.remote.set_aside(part.remote.rel(part.path), reason)
        else:
            quarantine_parquet(Layout(path.parent.parent), path, reason)
        raise StoreError(
            5,
            f"{path} is damaged and was moved to quarantine/; its runs count as not run "
            "(resume=True runs them again). Take a new frame: "
            "metalab.load_results(path).frame",
            str(path),
        ) from exc


def _losers(
    parts: list[_Part], journals: dict[int, pa.Table], schema: pa.Schema, push: Any
) -> dict[_Part, Any]:
    """Row positions (after the pushdown filter) of records superseded by a later one."""
    import numpy as np

    out: dict[_Part, Any] = {}
    by_store: dict[int, list[_Part]] = {}
    for p in parts:
        by_store.setdefault(p.store, []).append(p)
    for store_parts in by_store.values():
        tables = []
        for i, p in enumerate(store_parts):
            t = _part_table(p, journals, schema, [RUN_ID, ENDED_AT, ATTEMPT], push)
            tables.append(
                t.append_column("__part", pa.array(np.full(t.num_rows, i))).append_column(
                    "__row", pa.array(np.arange(t.num_rows))
                )
            )
        t = pa.concat_tables(tables)
        if t.num_rows == 0 or pc.count_distinct(t.column(RUN_ID)).as_py() == t.num_rows:
            continue
        t = t.append_column("__i", pa.array(np.arange(t.num_rows)))
        lost = np.ones(t.num_rows, dtype=bool)
        lost[dedupe_latest(t).column("__i").to_numpy()] = False
        allp = t.column("__part").to_numpy()[lost]
        allr = t.column("__row").to_numpy()[lost]
        for i, p in enumerate(store_parts):
            rows = allr[allp == i]
            if len(rows):
                out[p] = rows
    return out


def _run_id_span(md: Any) -> tuple[str, str] | None:
    """(smallest, largest) run id of a file from its row-group statistics, or None."""
    names = md.schema.names
    if RUN_ID not in names:
        return None
    col = names.index(RUN_ID)
    lo: str | None = None
    hi: str | None = None
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        if rg.num_rows == 0:
            continue
        st = rg.column(col).statistics
        if st is None or not st.has_min_max or st.null_count:
            return None
        lo = st.min if lo is None else min(lo, st.min)
        hi = st.max if hi is None else max(hi, st.max)
    if lo is None or hi is None:
        return None
    return str(lo), str(hi)


def _provably_distinct(frags: Sequence[Any]) -> bool:
    """True when no run id can be in two rows of these files (footers only, no data read).

    Each file's footer says whether its run ids are distinct (written with the file and
    covered by the footer checksum); its statistics bound them; files whose bounds do not
    overlap share no run id.  Files without the footer entry (older stores, other writers)
    or with overlapping bounds leave the deduplication pass in place.
    """
    spans = []
    for frag in frags:
        md = frag.metadata
        if md.num_rows == 0:
            continue
        if (md.metadata or {}).get(DISTINCT_KEY) != b"1":
            return False
        span = _run_id_span(md)
        if span is None:
            return False
        spans.append(span)
    spans.sort()
    return all(a[1] < b[0] for a, b in itertools.pairwise(spans))


def _check_distinct(part: _Part, table: pa.Table) -> None:
    """A file said its run ids were distinct: refuse a partition that shows otherwise."""
    ids = table.column(RUN_ID)
    if pc.count_distinct(ids).as_py() != len(ids):
        raise StoreError(
            5,
            f"{part.path} says its run ids are distinct but holds one twice; the file was "
            "not written by this metalab. Check the store: metalab verify <store>",
            str(part.path),
        )


def _read_part(
    part: _Part,
    journals: dict[int, pa.Table],
    how: _Reading,
    losers: dict[_Part, Any],
    run_ids: pa.Array | None,
) -> Any:
    import numpy as np

    push, exact = filter_exprs(how.clauses, how.schema, how.conflicts)
    # The exact filter may name columns the frame does not show (sweep, host...).
    filtered = [t.column for c in how.clauses for t in c if t.column in how.schema.names]
    need = list(dict.fromkeys([*how.columns, RUN_ID, ENDED_AT, ATTEMPT, *filtered]))
    t = _part_table(part, journals, how.schema, need, push)
    if part.store in how.distinct:
        _check_distinct(part, t)
    lose = losers.get(part)
    if lose is not None:
        mask = np.ones(t.num_rows, dtype=bool)
        mask[lose] = False
        t = t.filter(pa.array(mask))
    if exact is not None:
        t = t.filter(exact)
    if run_ids is not None:
        t = t.filter(pc.is_in(t.column(RUN_ID), value_set=run_ids))
    t = t.select(how.columns)
    label = how.labels[part.store]
    if label is not None:
        t = t.append_column(EXPERIMENT, pa.array([label] * t.num_rows, type=pa.string()))
    return to_frame_pandas(t, how.names)


def _partitions(
    snap: Scan, clauses: Sequence[Clause], push: Any, rows_per_partition: int
) -> tuple[list[_Part], dict[int, pa.Table]]:
    """The partitions of a frame (groups of matching row groups) and the live journals."""
    parts: list[_Part] = []
    journals: dict[int, pa.Table] = {}
    for i, s in enumerate(snap.stores):
        remote = s.store.mirror.remote if s.store.mirror is not None else None
        for frag in s.fragments:
            if prunes_file(clauses, set(frag.physical_schema.names)):
                continue
            pieces = (
                frag.split_by_row_group(push, schema=snap.schema)
                if push is not None
                else frag.split_by_row_group()
            )
            group: list[int] = []
            rows = 0
            for piece in pieces:
                rg = piece.row_groups[0]
                if group and rows + rg.num_rows > rows_per_partition:
                    parts.append(_Part(i, frag.path, tuple(group), remote))
                    group, rows = [], 0
                group.append(rg.id)
                rows += rg.num_rows
            if group:
                parts.append(_Part(i, frag.path, tuple(group), remote))
        if s.journal is not None and s.journal.num_rows:
            journals[i] = s.journal
            parts.append(_Part(i, None))
    return parts, journals


def _distinct_stores(snap: Scan, parts: list[_Part], journals: dict[int, Any]) -> frozenset[int]:
    """The stores of the snapshot whose partitions need no deduplication pass."""
    out = set()
    for i, s in enumerate(snap.stores):
        used = {p.path for p in parts if p.store == i}
        if i in journals or not used:
            continue
        if _provably_distinct([f for f in s.fragments if f.path in used]):
            out.add(i)
    return frozenset(out)


def lazy_frame(
    snap: Scan,
    *,
    columns: list[str],
    clauses: Sequence[Clause],
    run_ids: pa.Array | None,
    names: dict[str, str],
    rows_per_partition: int = 256 * 1024,
) -> dd.DataFrame:
    """A Dask frame over the snapshot: one partition per group of matching row groups.

    Row groups whose statistics rule out the pushdown filter never become partitions.
    """
    import dask.dataframe as dd
    from dask.delayed import delayed

    push, _ = filter_exprs(clauses, snap.schema, snap.conflicts)
    labels = {i: s.label for i, s in enumerate(snap.stores)}
    parts, journals = _partitions(snap, clauses, push, rows_per_partition)
    how = _Reading(
        schema=snap.schema,
        columns=[c for c in columns if c in snap.schema.names],
        clauses=list(clauses),
        conflicts=snap.conflicts,
        names=names,
        labels=labels,
        distinct=_distinct_stores(snap, parts, journals),
    )
    empty = snap.schema.empty_table().select(how.columns)
    if any(lbl is not None for lbl in labels.values()):
        empty = empty.append_column(EXPERIMENT, pa.array([], type=pa.string()))
    meta = to_frame_pandas(empty, names)
    if not parts:
        frame: dd.DataFrame = dd.from_pandas(meta, npartitions=1)
        return frame
    d_journals = delayed(journals, pure=False)
    dedupe = [p for p in parts if p.store not in how.distinct]
    d_losers = delayed(_losers, pure=False)(dedupe, d_journals, snap.schema, push) if dedupe else {}
    d_ids = delayed(run_ids, pure=False) if run_ids is not None else None
    d_how = delayed(how, pure=False)
    read = delayed(_read_part, pure=False)
    delayed_parts = [read(p, d_journals, d_how, d_losers, d_ids) for p in parts]
    frame = dd.from_delayed(delayed_parts, meta=meta, verify_meta=False)
    return frame
