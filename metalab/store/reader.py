"""Reading a store: Parquet record files plus live journals, deduplicated by run id.

Every file is verified as it is read (Parquet page and footer checksums, journal line
checksums, see :mod:`metalab.store.checksum`).  A file that fails is moved to
``quarantine/`` with a :class:`DamagedFileWarning` naming it, and is never returned as
data; its runs then count as not run, so ``resume=True`` runs them again.
"""

from __future__ import annotations

import errno
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import DamagedFileWarning as DamagedFileWarning  # re-exported: old import path
from ..errors import StoreError
from .checksum import parquet_footer_damage
from .journal import Journal, list_journals
from .layout import Layout
from .ledger import merged_metadata
from .paths import plain_files, quarantine
from .records import STEP_SCHEMA

log = logging.getLogger("metalab.store")
#: How many damaged files or lines this process has reported (lets a reader skip a
#: "data is missing" warning that would only repeat a damage warning it just gave).
damage_seen = 0


class DamagedFile(OSError):
    """A store file failed verification (readers quarantine it; never a missing file)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(errno.EIO, f"{path}: {reason}", str(path))
        self.path = path
        self.reason = reason


def unreadable(path: Path, exc: OSError) -> StoreError:
    """The error for a store file that exists but cannot be opened (not damage)."""
    code = exc.errno or errno.EIO
    return StoreError(
        code,
        f"cannot read store file {path}: {os.strerror(code)} (errno "
        f"{errno.errorcode.get(code, code)}); nothing was moved. Fix its permissions "
        "(or read the store as its owner) and try again",
        str(path),
    )


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
    meta = merged_metadata(tables)  # the ledger of everything the inputs stand for
    return _concat(tables).replace_schema_metadata(meta)


def _concat(tables: list[pa.Table]) -> pa.Table:
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


#: Reads of at most this many columns go through the dataset reader (see below).
NARROW_READ = 8


def read_parquet_file(path: Path, columns: Sequence[str] | None, filter: Any) -> pa.Table:
    """Read one Parquet file, verifying its footer and page checksums.

    Raises :class:`DamagedFile` when it fails verification, FileNotFoundError when it
    is gone (compacted away), and OSError when it cannot be opened.
    """
    reason = parquet_footer_damage(path)
    if reason is not None:
        raise DamagedFile(path, reason)
    try:
        pf = pq.ParquetFile(path, page_checksum_verification=True)
        names = pf.schema_arrow.names
        cols = None if columns is None else [c for c in columns if c in names]
        if filter is not None or (cols is not None and len(cols) <= NARROW_READ):
            # The dataset reader (pre-buffered, threaded over row groups) reads a few
            # columns ~1.4x faster than ParquetFile.read; a whole table it does not.
            return pq.read_table(
                path,
                columns=cols,
                filters=filter,
                schema=pf.schema_arrow,
                page_checksum_verification=True,
            )
        return pf.read(columns=cols)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as exc:
        if not path.exists():
            raise FileNotFoundError(str(path)) from exc
        raise DamagedFile(path, str(exc).splitlines()[0][:200]) from exc


def read_verified(path: Path) -> pa.Table:
    """A whole Parquet file, verified (raises :class:`DamagedFile` if it fails)."""
    return read_parquet_file(path, None, None)


def quarantine_parquet(layout: Layout, path: Path, reason: str) -> None:
    """Quarantine a damaged records or metrics file (and a metrics file's records sibling)."""
    global damage_seen
    damage_seen += 1
    quarantine(layout, path, reason)
    sibling = layout.records / path.name
    if path.parent == layout.metrics and sibling.exists():
        # Written together by one partition: its runs must run again to get their
        # stepped metrics back, so their records go aside too.
        quarantine(layout, sibling, "its stepped-metrics file was damaged")


def read_or_quarantine(
    layout: Layout, path: Path, columns: Sequence[str] | None = None, filter: Any = None
) -> pa.Table | None:
    """One verified Parquet file, or None when it is gone or damaged (then quarantined)."""
    try:
        return read_parquet_file(path, columns, filter)
    except FileNotFoundError:
        return None
    except DamagedFile as exc:
        quarantine_parquet(layout, path, exc.reason)
        return None
    except OSError as exc:
        raise unreadable(path, exc) from exc


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
                tables.append(read_parquet_file(f, columns, filter))
            except FileNotFoundError:
                vanished = True  # compacted away by another process: list again
                break
            except DamagedFile as exc:
                quarantine_parquet(layout, f, exc.reason)
            except OSError as exc:
                raise unreadable(f, exc) from exc
        if not vanished:
            return tables
    raise StoreError(
        errno.EAGAIN,
        f"store folder {folder} keeps changing while being read (another process is "
        "compacting it); try again",
        str(folder),
    )


def read_journal(layout: Layout, path: Path) -> Journal | None:
    """A verified journal, or None when its header is damaged (then it is quarantined).

    Damaged lines are skipped with a warning naming the file and the line numbers.
    """
    try:
        j = Journal(path)
    except OSError as exc:
        raise unreadable(path, exc) from exc
    global damage_seen
    if j.header_damage is not None or j.damaged_lines:
        damage_seen += 1
    if j.header_damage is not None:
        quarantine(layout, path, j.header_damage)
        return None
    if j.damaged_lines:
        warnings.warn(
            f"damaged store file {path}: {_lines(j.damaged_lines)} failed verification and "
            "are skipped; those runs are treated as not run, so resume=True re-runs them",
            DamagedFileWarning,
            stacklevel=3,
        )
    return j


def _lines(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:10])
    more = f" and {len(numbers) - 10} more" if len(numbers) > 10 else ""
    return f"line{'s' if len(numbers) > 1 else ''} {shown}{more}"


def retire_journal(layout: Layout, j: Journal) -> None:
    """Delete a journal whose records are safe in Parquet; one with damaged lines goes aside."""
    if j.damaged_lines:
        quarantine(
            layout,
            j.path,
            f"{_lines(j.damaged_lines)} failed verification",
            consequence="its other runs were saved to records/; the runs of the damaged "
            "lines are treated as not run, so resume=True re-runs them",
        )
        return
    try:
        j.path.unlink()
    except FileNotFoundError:
        pass


def journal_tables(
    layout: Layout, sweep: str | None = None
) -> tuple[list[pa.Table], list[pa.Table]]:
    """Record and step tables of the journals present now (runs completed so far)."""
    recs, steps = [], []
    prefix = f"{sweep}-" if sweep else ""
    for path in list_journals(layout.journal, prefix):
        j = read_journal(layout, path)
        if j is None:
            continue
        records, st = j.tables()
        if records is not None:
            recs.append(records)
        if st is not None:
            steps.append(st)
    return recs, steps


def may_have_duplicates(run_ids: pa.ChunkedArray | pa.Array) -> bool:
    """False when every run id is distinct (exact); True when some may repeat.

    Run ids are 32 hex characters: a 64-bit key mixed from 16 of them is sorted
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
        return bool(pc.count_distinct(arr).as_py() != len(arr))
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    words = data.view(np.uint64).reshape(-1, 4)
    # Two words hold 16 hex digits (64 bits of the id): enough for a "maybe" key.
    keys = np.sort(words[:, 0] ^ (words[:, 1] * np.uint64(0x9E3779B97F4A7C15)))
    return bool((keys[1:] == keys[:-1]).any())


def dedupe_latest(table: pa.Table, *, checked: bool = False) -> pa.Table:
    """Keep one record per run id: the highest ``attempt``, then the latest ``ended_at``.

    Attempts are numbered by the driver (the run's current attempt + 1), so a retry on a
    host whose clock lags still supersedes the attempt before it; the end time only
    breaks ties (two drivers that ran the same attempt at once). ``checked``: the caller
    found that some run id may repeat (:func:`may_have_duplicates`).
    """
    if table.num_rows == 0:
        return table
    run_ids = table.column("run_id")
    if not checked and not may_have_duplicates(run_ids):
        return table
    import numpy as np

    def ints(name: str) -> Any:
        if name not in table.column_names:
            return np.zeros(table.num_rows, dtype="int64")
        col = table.column(name).cast(pa.int64()).fill_null(0)
        return col.to_numpy() if isinstance(col, pa.ChunkedArray) else col.to_numpy(False)

    codes = pc.dictionary_encode(run_ids).combine_chunks().indices.to_numpy(zero_copy_only=False)
    order = np.lexsort((ints("ended_at"), ints("attempt"), codes))  # by run, attempt, end
    last = np.ones(len(order), dtype=bool)
    sorted_codes = codes[order]
    last[:-1] = sorted_codes[1:] != sorted_codes[:-1]
    keep = np.sort(order[last])
    return table.take(pa.array(keep))


#: The columns that identify one stepped-metric point (a copy of it is a duplicate).
STEP_KEY = ["run_id", "sweep", "name", "step", "time"]


def dedupe_steps(table: pa.Table) -> pa.Table:
    """Drop repeated copies of the same stepped-metric point (left by a crash mid-compaction)."""
    if table.num_rows < 2 or not all(c in table.column_names for c in STEP_KEY):
        return table
    import numpy as np

    idx = pa.array(np.arange(table.num_rows))
    first = (
        table.select(STEP_KEY)
        .append_column("__i", idx)
        .group_by(STEP_KEY, use_threads=False)
        .aggregate([("__i", "min")])
        .column("__i_min")
    )
    if len(first) == table.num_rows:
        return table
    return table.take(pc.sort_indices(first))


def read_records(
    layout: Layout,
    *,
    columns: Sequence[str] | None = None,
    filter: Any = None,
    distinct: pa.Array | None = None,
) -> pa.Table:
    """All current run records of a store (Parquet + journals), one row per run id.

    ``distinct``: run ids known to be distinct (a plan's): records holding exactly these,
    in this order, need no search for repeated ids (one comparison instead of a sort).
    """
    need = None
    if columns is not None:
        # ``ended_at`` only breaks ties between copies of a run: read when there are any.
        need = list(dict.fromkeys([*columns, "run_id", "attempt"]))
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
    table = concat(tables)
    if table.num_rows and not _same_ids(table, distinct) and may_have_duplicates(table["run_id"]):
        if columns is not None and "ended_at" not in columns:  # read again, with the tie-breaker
            again = read_records(layout, columns=[*columns, "ended_at"], filter=filter)
            return again.select([c for c in columns if c in again.column_names])
        table = dedupe_latest(table, checked=True)
    if columns is not None:
        table = table.select([c for c in columns if c in table.column_names])
    return table


def _same_ids(table: pa.Table, ids: pa.Array | None) -> bool:
    """Whether ``table``'s run ids are exactly ``ids``, row for row."""
    if ids is None or table.num_rows != len(ids):
        return False
    col = table.column("run_id")
    return bool(col.type == ids.type and col.equals(pa.chunked_array([ids])))


def read_steps(layout: Layout, *, filter: Any = None) -> pa.Table:
    """The long table of stepped metrics (run_id, name, step, value, time, sweep)."""
    _, jsteps = journal_tables(layout)  # journals first (see read_records)
    tables = read_parquet_folder(layout, layout.metrics, filter=filter)
    for t in jsteps:
        tables.append(t.filter(filter) if filter is not None else t)
    return concat(tables, STEP_SCHEMA)


_read_file = read_parquet_file  # the old name
