"""Reading the selected runs of one or more stores: an Arrow table, or a lazy Dask frame.

A :class:`Scan` is a snapshot of the stores: the live journals are read first, then the
Parquet footers (so a partition that finishes meanwhile is seen in one place or both,
never in neither), and one schema is unified over all of them (a column missing from a
file is null; a column whose type differs between files becomes float or text).

Filters travel as :class:`Term` lists and become two pyarrow expressions:

* the *pushdown* expression, handed to the Parquet reader, which skips row groups and
  files by their statistics.  A term on a column that can change between attempts of a
  run (status, metrics) is pushed down as ``term | attempt > 1``: every record that can
  supersede another is an attempt after the first, so the latest record of a run is
  always read and deduplication stays correct.
* the *exact* expression, applied after deduplication.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from ..errors import StoreError
from ..store.checksum import parquet_footer_damage
from ..store.reader import (
    dedupe_latest,
    journal_tables,
    parquet_files,
    quarantine_parquet,
    unreadable,
)
from ..store.records import PARAM_PREFIX, build_records

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd

    from ..store import Store

#: Columns that never differ between the records of one run id.
INVARIANT = {"run_id", "replicate", "seed", "params"}

# Parquet page checksums (CRC-32 of every page) are verified as pages are read.
_FORMAT = ds.ParquetFileFormat(
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True)
)
_FS = pafs.LocalFileSystem()


def base_schema() -> pa.Schema:
    """The schema of the columns every record has."""
    return build_records([], {}, host="", pid=0, worker="", sweep="").schema.remove_metadata()


# ---------------------------------------------------------------------------- schemas
def unify(schemas: Sequence[pa.Schema]) -> pa.Schema:
    """One schema over many: missing columns allowed, conflicting types become float or text."""
    schemas = [s.remove_metadata() for s in schemas]
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    types: dict[str, set[pa.DataType]] = {}
    for s in schemas:
        for f in s:
            types.setdefault(f.name, set()).add(f.type)
    fixed: dict[str, pa.DataType] = {}
    for name, ts in types.items():
        ts = {t for t in ts if not pa.types.is_null(t)}
        if len(ts) > 1:
            numeric = all(
                pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
                for t in ts
            )
            fixed[name] = pa.float64() if numeric else pa.string()
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
                    else _to_text(col)
                )
            cols.append(col)
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _to_text(col: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(col, pa.string())


# ----------------------------------------------------------------------------- filters
@dataclass(frozen=True)
class Term:
    """One condition on one raw column: ``op`` is ==, !=, <, <=, >, >=, in, not in, null."""

    column: str
    op: str
    value: Any = None


#: A filter is a conjunction of clauses; a clause is a disjunction of terms.
Clause = tuple[Term, ...]

_OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _scalar(value: Any, typ: pa.DataType) -> pa.Scalar | None:
    try:
        s = pa.scalar(value)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return None
    if s.type == typ:
        return s
    both_numeric = all(
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
        for t in (s.type, typ)
    )
    if both_numeric:
        return s  # compared numerically by Arrow
    if pa.types.is_string(typ) and not isinstance(value, str):
        value = str(value).lower() if isinstance(value, bool) else str(value)
        return pa.scalar(value, pa.string())
    try:
        return s.cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


def term_expr(term: Term, schema: pa.Schema) -> ds.Expression | None:
    """The Arrow expression of a term, or None when it cannot be expressed for this schema."""
    i = schema.get_field_index(term.column)
    if i < 0:
        return None
    typ = schema.field(i).type
    f = ds.field(term.column)
    if term.op == "null":
        return f.is_null() if term.value else ~f.is_null()
    if term.op in ("in", "not in"):
        vals = [_scalar(v, typ) for v in term.value]
        if any(v is None for v in vals):
            return None
        nonnull = [v.cast(typ) if v.type != typ else v for v in vals if v.is_valid]
        try:
            e = f.isin(pa.array([v.as_py() for v in nonnull], type=typ))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
        if len(nonnull) < len(vals):
            e = e | f.is_null()
        return ~e | f.is_null() if term.op == "not in" else e
    s = _scalar(term.value, typ)
    if s is None:
        return None
    e = _OPS[term.op](f, ds.scalar(s))
    if term.op == "!=":  # pandas: NaN != x is True
        e = e | f.is_null()
    return e


def clause_expr(clause: Clause, schema: pa.Schema) -> ds.Expression | None:
    exprs = [term_expr(t, schema) for t in clause]
    if any(e is None for e in exprs):
        return None
    return reduce(operator.or_, exprs)


def _invariant(clause: Clause) -> bool:
    return all(t.column in INVARIANT or t.column.startswith(PARAM_PREFIX) for t in clause)


def filter_exprs(
    clauses: Sequence[Clause], schema: pa.Schema, conflicts: set[str] | frozenset[str] = frozenset()
) -> tuple[ds.Expression | None, ds.Expression | None]:
    """(pushdown, exact) expressions of a conjunction of clauses over ``schema``.

    Clauses on ``conflicts`` (columns some file stores with another type) are not pushed
    down: the Parquet reader compares them before casting.
    """
    inv, var, exact = [], [], []
    for c in clauses:
        e = clause_expr(c, schema)
        if e is None:
            continue
        exact.append(e)
        if any(t.column in conflicts for t in c):
            continue
        (inv if _invariant(c) else var).append(e)
    push = list(inv)
    if var and "attempt" in schema.names:
        push.append(reduce(operator.and_, var) | (ds.field("attempt") > 1))
    return _all(push), _all(exact)


def _all(exprs: list[ds.Expression]) -> ds.Expression | None:
    return reduce(operator.and_, exprs) if exprs else None


def _prunes_file(clauses: Sequence[Clause], names: set[str]) -> bool:
    """True when an invariant clause needs a column this file does not have (no match)."""
    for c in clauses:
        if _invariant(c) and all(
            t.column not in names and t.op not in ("!=", "not in", "null") for t in c
        ):
            return True
    return False


_AST_OPS = {
    "Eq": "==",
    "NotEq": "!=",
    "Lt": "<",
    "LtE": "<=",
    "Gt": ">",
    "GtE": ">=",
    "In": "in",
    "NotIn": "not in",
}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def query_clauses(query: str, columns: dict[str, str], env: dict[str, Any]) -> list[Clause]:
    """The part of a pandas query that can be pushed down, as clauses (may be empty).

    ``columns`` maps table names to raw record columns; ``env`` resolves ``@name``.
    Anything not understood is simply not pushed down (pandas evaluates the whole query).
    """
    import ast
    import re

    ticks: dict[str, str] = {}

    def tick(m: re.Match[str]) -> str:
        key = f"__tick{len(ticks)}__"
        ticks[key] = m.group(1)
        return key

    text = re.sub(r"`([^`]*)`", tick, query)
    text = re.sub(r"@([A-Za-z_][A-Za-z_0-9]*)", r"__at_\1__", text)
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return []

    def column(node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            name = ticks.get(node.id, node.id)
            return columns.get(name)
        return None

    _missing = object()

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            v = value(node.operand)
            return -v if isinstance(v, (int, float)) and not isinstance(v, bool) else _missing
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            vals = [value(e) for e in node.elts]
            return _missing if any(v is _missing for v in vals) else vals
        if isinstance(node, ast.Name) and node.id.startswith("__at_"):
            return env.get(node.id[5:-2], _missing)
        return _missing

    def terms(node: ast.AST) -> list[Term] | None:  # a conjunction of terms, or None
        if isinstance(node, ast.Compare):
            out = []
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                sym = _AST_OPS.get(type(op).__name__)
                col, val = column(left), value(right)
                if col is None:
                    col, val = column(right), value(left)
                    sym = _FLIP.get(sym or "")
                if sym is None or col is None or val is _missing:
                    return None
                if sym in ("in", "not in"):
                    if not isinstance(val, list):
                        return None
                elif isinstance(val, list) or val is None:
                    return None
                out.append(Term(col, sym, val))
                left = right
            return out
        return None

    def clauses(node: ast.AST) -> list[Clause]:
        if (isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And)) or (
            isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd)
        ):
            parts = node.values if isinstance(node, ast.BoolOp) else [node.left, node.right]
            return [c for p in parts for c in clauses(p)]
        if (isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or)) or (
            isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)
        ):
            parts = node.values if isinstance(node, ast.BoolOp) else [node.left, node.right]
            alts = []
            for p in parts:
                t = terms(p)
                if t is None or len(t) != 1:
                    return []
                alts.append(t[0])
            return [tuple(alts)]
        t = terms(node)
        return [(x,) for x in t] if t else []

    return clauses(tree)


# -------------------------------------------------------------------------------- scans
@dataclass
class StoreScan:
    """What one store held when it was scanned."""

    store: Store
    fragments: list[Any]
    journal: pa.Table | None
    label: str | None = None


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


def scan_store(store: Store, label: str | None = None) -> StoreScan:
    """Snapshot one store: journals first, then the Parquet footers, verified.

    A file whose footer fails verification is quarantined (with a warning) and left out;
    data that the ledgers say is missing is reported (see ``store/verify.py``).
    """
    from ..store import reader
    from ..store.reader import concat
    from ..store.verify import store_totals, warn_missing

    seen = reader.damage_seen
    before = _damage_at_scan.get(str(store.root), seen)
    _damage_at_scan[str(store.root)] = seen
    recs, _ = journal_tables(store.layout)
    journal = concat(recs) if recs else None
    frags = []
    for path in parquet_files(store.layout.records):
        try:
            reason = parquet_footer_damage(path)
            if reason is None:
                frag = _FORMAT.make_fragment(str(path), filesystem=_FS)
                frag.ensure_complete_metadata()
                frags.append(frag)
                continue
        except FileNotFoundError:
            continue  # compacted away; its rows are in the merged file listed with it
        except PermissionError as exc:
            raise unreadable(path, exc) from exc
        except (pa.ArrowException, OSError) as exc:
            if not path.exists():
                continue
            reason = str(exc).splitlines()[0][:200]
        quarantine_parquet(store.layout, path, reason)
    totals = store_totals(store.layout, [f.metadata.metadata for f in frags], recs)
    if reader.damage_seen == seen == before:  # else a damage warning has just said it
        warn_missing(store.layout, totals)
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


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


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
    need = list(dict.fromkeys([*cols, "run_id", "ended_at", "attempt"]))
    sub = pa.schema([schema.field(c) for c in need])
    tables = []
    frags = [f for f in s.fragments if not _prunes_file(clauses, set(f.physical_schema.names))]
    if frags:
        dset = ds.FileSystemDataset(frags, schema=schema, format=_FORMAT, filesystem=_FS)
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
    for frag in frags:
        path = Path(frag.path)
        try:
            frag.to_table(schema=schema, columns=need, filter=push)
        except FileNotFoundError:
            found = True  # compacted away meanwhile: a new snapshot sees the merged file
        except PermissionError as exc:
            raise unreadable(path, exc) from exc
        except (pa.ArrowException, OSError) as exc:
            if path.exists():
                quarantine_parquet(s.store.layout, path, str(exc).splitlines()[0][:200])
            found = True
    if not found:
        raise StoreError(5, f"reading the store {s.store.root} failed: {error}") from error


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
            t = _sorted_by(t, t.column("started_at"))
        if s.label is not None:
            t = t.append_column(
                "experiment", pa.repeat(pa.scalar(s.label), t.num_rows).cast(pa.string())
            )
        out.append(t)
    table = pa.concat_tables(out) if len(out) > 1 else out[0]
    if run_ids is not None:
        pos = pc.index_in(table.column("run_id"), value_set=run_ids)
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


# ------------------------------------------------------------------------ the Dask frame
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


def _part_table(
    part: _Part, journals: dict[int, pa.Table], schema: pa.Schema, columns: list[str], push: Any
) -> pa.Table:
    if part.path is None:
        j = conform(journals[part.store], schema)
        if push is not None:
            j = j.filter(push)
        return j.select(columns)
    frag = _FORMAT.make_fragment(part.path, filesystem=_FS, row_groups=list(part.row_groups))
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
        from ..store.layout import Layout

        path = Path(part.path)
        quarantine_parquet(Layout(path.parent.parent), path, str(exc).splitlines()[0][:200])
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
            t = _part_table(p, journals, schema, ["run_id", "ended_at", "attempt"], push)
            tables.append(
                t.append_column("__part", pa.array(np.full(t.num_rows, i))).append_column(
                    "__row", pa.array(np.arange(t.num_rows))
                )
            )
        t = pa.concat_tables(tables)
        if t.num_rows == 0 or pc.count_distinct(t.column("run_id")).as_py() == t.num_rows:
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


def _read_part(
    part: _Part,
    journals: dict[int, pa.Table],
    schema: pa.Schema,
    columns: list[str],
    clauses: Sequence[Clause],
    conflicts: set[str],
    losers: dict[_Part, Any],
    run_ids: pa.Array | None,
    label: str | None,
    names: dict[str, str],
) -> Any:
    import numpy as np

    push, exact = filter_exprs(clauses, schema, conflicts)
    need = list(dict.fromkeys([*columns, "run_id", "ended_at", "attempt"]))
    t = _part_table(part, journals, schema, need, push)
    lose = losers.get(part)
    if lose is not None:
        mask = np.ones(t.num_rows, dtype=bool)
        mask[lose] = False
        t = t.filter(pa.array(mask))
    if exact is not None:
        t = t.filter(exact)
    if run_ids is not None:
        t = t.filter(pc.is_in(t.column("run_id"), value_set=run_ids))
    t = t.select(columns)
    if label is not None:
        t = t.append_column("experiment", pa.array([label] * t.num_rows, type=pa.string()))
    return to_frame_pandas(t, names)


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
    import dask
    import dask.dataframe as dd

    push, _ = filter_exprs(clauses, snap.schema, snap.conflicts)
    cols = [c for c in columns if c in snap.schema.names]
    parts: list[_Part] = []
    journals: dict[int, pa.Table] = {}
    labels: dict[int, str | None] = {}
    for i, s in enumerate(snap.stores):
        labels[i] = s.label
        for frag in s.fragments:
            if _prunes_file(clauses, set(frag.physical_schema.names)):
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
                    parts.append(_Part(i, frag.path, tuple(group)))
                    group, rows = [], 0
                group.append(rg.id)
                rows += rg.num_rows
            if group:
                parts.append(_Part(i, frag.path, tuple(group)))
        if s.journal is not None and s.journal.num_rows:
            journals[i] = s.journal
            parts.append(_Part(i, None))
    empty = snap.schema.empty_table().select(cols)
    if any(lbl is not None for lbl in labels.values()):
        empty = empty.append_column("experiment", pa.array([], type=pa.string()))
    meta = to_frame_pandas(empty, names)
    if not parts:
        return dd.from_pandas(meta, npartitions=1)
    d_journals = dask.delayed(journals, pure=False)
    d_losers = dask.delayed(_losers, pure=False)(parts, d_journals, snap.schema, push)
    d_ids = dask.delayed(run_ids, pure=False) if run_ids is not None else None
    read = dask.delayed(_read_part, pure=False)
    delayed_parts = [
        read(
            p,
            d_journals,
            snap.schema,
            cols,
            list(clauses),
            snap.conflicts,
            d_losers,
            d_ids,
            labels[p.store],
            names,
        )
        for p in parts
    ]
    return dd.from_delayed(delayed_parts, meta=meta, verify_meta=False)


__all__ = [
    "Clause",
    "Scan",
    "StoreScan",
    "Term",
    "conform",
    "filter_exprs",
    "lazy_frame",
    "read_eager",
    "scan",
    "to_frame_pandas",
    "unify",
]
