"""Writing Parquet files into a store: unique names, atomic writes, checksums."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow as pa

from .atomic import atomic_write
from .layout import Layout
from .paths import check_name
from .records import write_table_file

ROW_GROUP_SIZE = 16 * 1024  # small enough for filters to skip most of a file
COMPACT_MAX_ROWS = 1_000_000


def write_parquet(path: Path, table: pa.Table) -> None:
    """Atomically write one Parquet file, with checksums (see ``records.write_table_file``)."""
    atomic_write(path, lambda p: write_table_file(table, p, row_group_size=ROW_GROUP_SIZE))


def new_file_name(tag: str) -> str:
    """A fresh Parquet file name; ``tag`` (a sweep id...) must keep it a plain name."""
    return check_name(f"{tag}-{uuid.uuid4().hex[:12]}.parquet", "file name", "the store")


def write_partition(layout: Layout, tag: str, records: pa.Table, steps: pa.Table | None) -> None:
    """Write one partition's records (and stepped metrics) as Parquet files."""
    name = new_file_name(tag)
    if steps is not None and steps.num_rows:
        write_parquet(layout.metrics / name, steps)
    if records.num_rows:
        write_parquet(layout.records / name, records)
