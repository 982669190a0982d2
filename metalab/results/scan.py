"""Reading the selected runs of one or more stores into one Arrow table.

A :class:`Scan` is a snapshot of the stores: the live journals are read first, then the
Parquet footers (so a partition that finishes meanwhile is seen in one place or both,
never in neither), and one schema is unified over all of them (a column missing from a
file is null; a column whose type differs between files becomes float or text).
:func:`read_eager` reads a snapshot with the filters of :mod:`metalab.results.query`
pushed down, deduplicates by run id and puts the rows in table order; the lazy Dask
frame over a snapshot is in :mod:`metalab.results.frame`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from ..errors import StoreError
from ..store.checksum import parquet_footer_damage
from ..store.reader import (
    concat,
    dedupe_latest,
    journal_tables,
    parquet_files,
    quarantine_parquet,
    unreadable,
)
from ..store.records import ATTEMPT, ENDED_AT, RUN_ID, STARTED_AT, build_records
from ..store.remote_reading import remote_fragments
from .naming import EXPERIMENT
from .query import Clause, filter_exprs, prunes_file

if TYPE_CHECKING:
    from ..store import Store

__all__ = [
    "FORMAT",
    "FS",
    "Scan",
    "StoreScan",
    "base_schema",
    "conform",
    "read_eager",
    "scan",
    "scan_store",
    "unify",
]

#: How the snapshot's Parquet files are read (shared with the lazy frame).
# Parquet page checksums (CRC-32 of every page) are verified as pages are read.
FORMAT = ds.ParquetFileFormat(
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True)
)
FS = pafs.LocalFileSystem()


def base_schema() -> pa.Schema:
    """The schema of the columns every record has."""
    return build_records([], {}, host="", pid=0, worker="", sweep="").schema.remove_metadata()


# ---------------------------------------------------------------------------- schemas
def _is_number(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t))


def _conflict_types(schemas: Sequence[pa.Schema]) -> dict[str, pa.DataType]:
    """Columns stored with several types -> the type they are read as (float or text)."""
    types: dict[str, set[pa.DataType]] = {}
    for s in schemas:
        for f in s:
            types.setdefault(f.name, set()).add(f.type)
    fixed: dict[str, pa.DataType] = {}
    for name, ts in types.items():
        ts = {t for t in ts if not pa.types.is_null(t)}
        if len(ts) > 1:
            numeric = all(_is_number(t) or pa.types.is_boolean(t) for t in ts)
            fixed[name] = pa.float64() if numeric else pa.string()
    return fixed


def unify(schemas: Sequence[pa.Schema]) -> pa.Schema:
    """One schema over many: missing columns allowed, conflicting types become float or text."""
    schemas = [s.remove_metadata() for s in schemas]
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    fixed = _conflict_types(schemas)
    out = []
    for s in schemas:
        for name, t in fixed.items():
            i = s.get_field_index(name)
            if i >= 0:
                s = s.set(i, pa.field(name, t))
        out.append(s)
    return pa.unify_schemas(out, promote_options="permissive")


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly the columns and types of ``schema`` (missing ones null)."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            if col.type != f.type:
                col = (
                    pc.cast(col, f.type, safe=False)
                    if not pa.types.is_string(f.type)
                    else pc.cast(col, pa.string())
                )
            cols.append(col)
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


# -------------------------------------------------------------------------------- scans
@dataclass
class StoreScan:
    """What one store held when it was scanned."""

    store: Store
    fragments: list[Any]
    journal: pa.Table | None
    label: str | None = None

    @property
    def filesystem(self) -> pafs.FileSystem:
        """Where the fragments are read from: the local disk, or the store's bucket."""
        mirror = self.store.mirror
        return FS if mirror is None else mirror.remote.arrow()


@dataclass
class Scan:
    """A snapshot of one or more stores with their unified schema."""

    stores: list[StoreScan]
    schema: pa.Schema
    names: dict[str, str] = field(default_factory=dict)
    conflicts: set[str] = field(default_factory=set)


#: Damage reports seen at the last scan of each store (a scan that follows a damage
#: report, e.g. the new snapshot after a quarantine, does not repeat it as "missing").
_damage_at_scan: dict[str, int] = {}


def _verified_fragment(store: Store, path: Path) -> Any:
    """The fragment of one records file whose footer verifies; else quarantined, None."""
    try:
        reason = parquet_footer_damage(path)
        if reason is None:
            frag = FORMAT.make_fragment(str(path), filesystem=FS)
            frag.ensure_complete_metadata()
            return frag
    except FileNotFoundError:
        return None  # compacted away; its rows are in the merged file listed with it
    except PermissionError as exc:
        raise unreadable(path, exc) from exc
    except (pa.ArrowException, OSError) as exc:
        if not path.exists():
            return None
        reason = str(exc).splitlines()[0][:200]
    quarantine_parquet(store.layout, path, reason)
    return None


def scan_store(store: Store, label: str | None = None) -> StoreScan:
    """Snapshot one store: journals first, then the Parquet footers, verified.

    A file whose footer fails verification is quarantined (with a warning) and left out;
    data that the ledgers say is missing is reported (see ``store/verify.py``).
    """
    from ..store import reader
    from ..store.verify import store_totals, warn_missing

    seen = reader.damage_seen
    before = _damage_at_scan.get(str(store.root), seen)
    _damage_at_scan[str(store.root)] = seen
    recs, _ = journal_tables(store.layout)
    journal = concat(recs) if recs else None
    if store.mirror is not None:  # records are read from the bucket, not copied
        frags = remote_fragments(store.mirror.remote, FORMAT)
    else:
        found = (_verified_fragment(store, p) for p in parquet_files(store.layout.records))
        frags = [f for f in found if f is not None]
    totals = store_totals(store.layout, [f.metadata.metadata for f in frags], recs)
    if reader.damage_seen == seen == before:  # else a damage warning has just said it
        warn_missing(store.layout, totals, store.location)
    return StoreScan(store, frags, journal, label)


def scan(stores: Sequence[tuple[Store, str | None]]) -> Scan:
    """Snapshot several stores and unify their schemas."""
    scans = [scan_store(s, label) for s, label in stores]
    schemas = [base_schema()]
    for s in scans:
        schemas += [f.physical_schema for f in s.fragments]
        if s.journal is not None:
            schemas.append(s.journal.schema)
    schema = unify(schemas)
    conflicts = set()
    for s in scans:
        for frag in s.fragments:
            for f in frag.physical_schema:
                want = schema.field(f.name).type
                if f.type != want and not (_is_number(f.type) and _is_number(want)):
                    conflicts.add(f.name)
    return Scan(scans, schema, conflicts=conflicts)


# ------------------------------------------------------------------------------ reading
class _Vanished(Exception):
    """A file listed by the scan was deleted (compacted) or quarantined before it was read."""


def _quarantine_damaged(
    s: StoreScan,
    frags: list[Any],
    schema: pa.Schema,
    need: list[str],
    push: Any,
    error: Exception,
) -> None:
    """Find the files whose pages fail verification (a dataset error names none): quarantine."""
    found = False
    remote = s.store.mirror.remote if s.store.mirror is not None else None
    for frag in frags:
        path = Path(frag.path)
        try:
            frag.to_table(schema=schema, columns=need, filter=push)
        except FileNotFoundError:
            found = True  # compacted away meanwhile: a new snapshot sees the merged file
        except PermissionError as exc:
            raise unreadable(path, exc) from exc
        except (pa.ArrowException, OSError) as exc:
            reason = str(exc).splitlines()[0][:200]
            if remote is not None:
                remote.set_aside(remote.rel(frag.path), reason)
            elif path.exists():
                quarantine_parquet(s.store.layout, path, reason)
            found = True
    if not found:
        raise StoreError(5, f"reading the store {s.store.root} failed: {error}") from error


def read_store(
    s: StoreScan,
    schema: pa.Schema,
    *,
    columns: Sequence[str] | None,
    clauses: Sequence[Clause],
    conflicts: set[str] | frozenset[str] = frozenset(),
) -> pa.Table:
    """The current records of one scanned store (deduplicated, exactly filtered)."""
    push, exact = filter_exprs(clauses, schema, conflicts)
    cols = list(columns) if columns is not None else schema.names
    need = list(dict.fromkeys([*cols, RUN_ID, ENDED_AT, ATTEMPT]))
    sub = pa.schema([schema.field(c) for c in need])
    tables = []
    frags = [f for f in s.fragments if not prunes_file(clauses, set(f.physical_schema.names))]
    if frags:
        dset = ds.FileSystemDataset(frags, schema=schema, format=FORMAT, filesystem=s.filesystem)
        try:
            tables.append(dset.to_table(columns=need, filter=push))
        except FileNotFoundError as exc:
            raise _Vanished from exc
        except (pa.ArrowException, OSError) as exc:  # a page failed its checksum
            _quarantine_damaged(s, frags, schema, need, push, exc)
            raise _Vanished from exc
    if s.journal is not None and s.journal.num_rows:
        j = conform(s.journal, schema)
        if push is not None:
            j = j.filter(push)
        tables.append(j.select(need))
    if not tables:
        return sub.empty_table().select(cols)
    table = pa.concat_tables([t if t.schema == sub else t.cast(sub) for t in tables])
    table = dedupe_latest(table)
    if exact is not None:
        table = table.filter(exact)
    return table.select(cols)


def read_eager(
    stores: Sequence[tuple[Store, str | None]],
    *,
    columns: Sequence[str] | None,
    clauses: Sequence[Clause],
    run_ids: pa.Array | None,
    snap: Scan | None = None,
) -> tuple[pa.Table, Scan]:
    """Read the selected records of every store as one Arrow table, in table order.

    Rows follow ``run_ids`` when given (plan order), else each store's ``started_at``.
    With labels, an ``experiment`` column names each row's store.
    """
    for _attempt in range(5):
        snap = snap if snap is not None else scan(stores)
        try:
            return _read_snapshot(snap, columns=columns, clauses=clauses, run_ids=run_ids), snap
        except _Vanished:
            snap = None
            continue  # compaction replaced files while reading: take a new snapshot
    raise StoreError(11, "the store keeps changing while being read; try again")


def _read_snapshot(
    snap: Scan,
    *,
    columns: Sequence[str] | None,
    clauses: Sequence[Clause],
    run_ids: pa.Array | None,
) -> pa.Table:
    cols = [c for c in columns if c in snap.schema.names] if columns is not None else None
    out = []
    for s in snap.stores:
        t = read_store(s, snap.schema, columns=cols, clauses=clauses, conflicts=snap.conflicts)
        if run_ids is None:
            t = _sorted_by(t, t.column(STARTED_AT))
        if s.label is not None:
            t = t.append_column(
                EXPERIMENT, pa.repeat(pa.scalar(s.label), t.num_rows).cast(pa.string())
            )
        out.append(t)
    table = pa.concat_tables(out) if len(out) > 1 else out[0]
    if run_ids is not None:
        pos = pc.index_in(table.column(RUN_ID), value_set=run_ids)
        keep = pc.is_valid(pos)
        if not pc.all(keep).as_py():
            table, pos = table.filter(keep), pos.filter(keep)
        table = _sorted_by(table, pos)
    return table


def _sorted_by(table: pa.Table, key: pa.ChunkedArray | pa.Array) -> pa.Table:
    """``table`` ordered by ``key`` (stable); free when it already is."""
    import numpy as np

    if table.num_rows < 2:
        return table
    if pa.types.is_timestamp(key.type):
        key = key.cast(pa.int64())
    values = (
        key.to_numpy() if isinstance(key, pa.ChunkedArray) else key.to_numpy(zero_copy_only=False)
    )
    if key.null_count == 0 and bool(np.all(values[1:] >= values[:-1])):
        return table
    return table.take(pc.sort_indices(key))
