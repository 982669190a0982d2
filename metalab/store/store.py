"""The Store: a folder of Parquet records, journals and artifacts, safe for concurrent use."""

from __future__ import annotations

import errno
import json
import os
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreError
from .atomic import TMP_PREFIX, atomic_write, atomic_write_json
from .checksum import FOLDER, parquet_footer_damage, seal_json
from .journal import list_journals
from .layout import SCHEMA_VERSION, Layout
from .reader import (
    DamagedFileWarning,
    concat,
    dedupe_latest,
    dedupe_steps,
    parquet_files,
    quarantine,
    quarantine_parquet,
    read_journal,
    read_parquet_folder,
    read_records,
    read_verified,
    retire_journal,
    unreadable,
)
from .records import write_table_file
from .verify import read_manifest_file, read_sweep_files, totals_for_sweep_file

ROW_GROUP_SIZE = 16 * 1024  # small enough for filters to skip most of a file
COMPACT_AT_FILES = 16
#: A store on a disk with less free space than this fails at start (errno ENOSPC).
MIN_FREE_BYTES = 1 << 20
COMPACT_MAX_ROWS = 1_000_000


def write_parquet(path: Path, table: pa.Table) -> None:
    """Atomically write one Parquet file, with checksums (see ``records.write_table_file``)."""
    atomic_write(path, lambda p: write_table_file(table, p, row_group_size=ROW_GROUP_SIZE))


def new_file_name(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}.parquet"


def write_partition(layout: Layout, tag: str, records: pa.Table, steps: pa.Table | None) -> None:
    """Write one partition's records (and stepped metrics) as Parquet files."""
    name = new_file_name(tag)
    if steps is not None and steps.num_rows:
        write_parquet(layout.metrics / name, steps)
    if records.num_rows:
        write_parquet(layout.records / name, records)


class Store:
    """One store folder. Create or open it with :meth:`Store.open`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.layout = Layout(root)

    # opening -----------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = False) -> Store:
        """Open a store, creating its folders when ``create`` (validates the path first)."""
        root = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
        if root.exists() and not root.is_dir():
            raise StoreError(
                errno.ENOTDIR,
                f"store path {root} is a file, not a folder; pass a folder path such as "
                f"store='{root.parent / 'runs' / root.stem}'",
                str(root),
            )
        store = cls(root)
        if create:
            store._create()
        elif not root.is_dir():
            raise StoreError(
                errno.ENOENT,
                f"no metalab store at {root}; check the path (stores are made by metalab.run)",
                str(root),
            )
        elif not store.layout.manifest.exists() and not store.layout.records.exists():
            raise StoreError(
                errno.ENOENT,
                f"{root} is a folder but not a metalab store (no manifest.json or records/)",
                str(root),
            )
        return store

    def _create(self) -> None:
        try:
            for d in self.layout.folders():
                d.mkdir(parents=True, exist_ok=True)
            probe = self.root / f"{TMP_PREFIX}probe-{uuid.uuid4().hex[:8]}"
            with open(probe, "wb") as f:
                f.write(b"metalab write probe\n" * 64)
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
            vfs = os.statvfs(self.root)
            if vfs.f_bavail * vfs.f_frsize < MIN_FREE_BYTES:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.root))
        except OSError as exc:
            code = exc.errno or errno.EIO
            raise StoreError(
                code,
                f"cannot write to the store at {self.root}: {os.strerror(code)} "
                f"(errno {errno.errorcode.get(code, code)}). Check permissions and free space, "
                "or pass another path with store=...",
                str(self.root),
            ) from exc

    # manifest ------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any]:
        """The verified manifest ({} if none); StoreError naming the repair if damaged."""
        return read_manifest_file(self.layout)

    def ensure_manifest(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Write the manifest if missing; check that an existing one is the same experiment."""
        existing = self.read_manifest()
        if existing:
            if existing.get("experiment") != manifest["experiment"]:
                raise StoreError(
                    errno.EEXIST,
                    f"the store at {self.root} belongs to experiment "
                    f"{existing.get('experiment')!r}, not {manifest['experiment']!r}; pass "
                    f"store='./runs/{manifest['experiment']}' (or another new folder)",
                    str(self.root),
                )
            return existing
        manifest = {"metalab_store": SCHEMA_VERSION, "created": time.time(), **manifest}
        atomic_write_json(self.layout.manifest, seal_json(manifest))
        return manifest

    def write_sweep(self, sweep: str, info: dict[str, Any]) -> None:
        if "ended" in info:  # what the store holds now: a reader finding less will say so
            info = {**info, **totals_for_sweep_file(self.layout)}
        atomic_write_json(self.layout.sweeps / f"{sweep}.json", seal_json(info))

    def read_sweeps(self) -> list[dict[str, Any]]:
        """Verified sweep files, oldest first (damaged ones quarantined with a warning)."""
        return read_sweep_files(self.layout)

    # reading ---------------------------------------------------------------------
    def records(self, columns: list[str] | None = None, filter: Any = None) -> pa.Table:
        """Current records (one per run id), optionally a subset of columns / rows."""
        return read_records(self.layout, columns=columns, filter=filter)

    def status_table(self) -> pa.Table:
        """run_id, status, attempt, artifacts of every current record (for resume planning)."""
        return self.records(columns=["run_id", "status", "attempt", "artifacts"])

    # maintenance -------------------------------------------------------------------
    def recover_journals(self, *, sweep: str | None = None, dead_only: bool = True) -> int:
        """Fold journals of dead writers into Parquet; returns how many runs were folded."""
        folded = 0
        prefix = f"{sweep}-" if sweep else ""
        for path in list_journals(self.layout.journal, prefix):
            j = read_journal(self.layout, path)  # a damaged header: quarantined
            if j is None or (dead_only and j.writer_alive() is not False):
                continue
            table, steps = j.tables()
            if table is not None and j.header is not None:
                write_partition(self.layout, f"recovered-{j.header['sweep']}", table, steps)
                folded += table.num_rows
            retire_journal(self.layout, j)  # deleted, or quarantined if lines were damaged
        return folded

    def check_metric_files(self) -> int:
        """Quarantine stepped-metrics files whose Parquet footer fails verification.

        The records written with a damaged file go aside too (see ``read_parquet_folder``),
        so resume runs those runs again and their steps come back. Returns files moved.
        """
        bad = 0
        for f in parquet_files(self.layout.metrics):
            try:
                reason = parquet_footer_damage(f)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise unreadable(f, exc) from exc
            if reason is not None:
                quarantine_parquet(self.layout, f, reason)
                bad += 1
        return bad

    def check_artifacts(self, table: pa.Table | None = None) -> set[str]:
        """Run ids whose artifact files are missing or not the size recorded.

        Damaged files are quarantined (moved aside, with a warning naming them); the runs
        are then treated as not run, so ``resume=True`` runs them again. ``table`` (with
        ``run_id`` and ``artifacts`` columns, already read) limits the check, e.g. to
        successful runs. Costs one ``stat`` per artifact.
        """
        from .reader import quarantine

        if table is None:
            try:
                table = self.records(columns=["run_id", "artifacts"])
            except (OSError, pa.ArrowException):
                return set()
        if "artifacts" not in table.column_names or table.num_rows == 0:
            return set()
        import pyarrow.compute as pc

        table = table.filter(pc.is_valid(table.column("artifacts")))
        bad: set[str] = set()
        for run_id, raw in zip(
            table.column("run_id").to_pylist(), table.column("artifacts").to_pylist(), strict=True
        ):
            for entry in json.loads(raw):
                path = self.root / entry["path"]
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    size = -1
                if size == entry.get("size", size):
                    continue
                bad.add(run_id)
                if size >= 0:
                    quarantine(
                        self.layout, path, f"{size} bytes, the run recorded {entry.get('size')}"
                    )
                else:
                    warnings.warn(
                        f"artifact file {path} of run {run_id} is missing; the run is treated "
                        "as not run, so resume=True runs it again",
                        DamagedFileWarning,
                        stacklevel=3,
                    )
        return bad

    def remove_done_markers(self, sweep: str) -> None:
        """Delete ``journal/<sweep>-*.done`` (needed only while that sweep runs)."""
        try:
            names = os.listdir(self.layout.journal)
        except FileNotFoundError:
            return
        for n in names:
            if n.startswith(f"{sweep}-") and n.endswith(".done"):
                try:
                    os.unlink(self.layout.journal / n)
                except FileNotFoundError:
                    pass

    def clean_temp_files(self, older_than_s: float = 3600.0) -> int:
        """Delete stray temp files left by killed writers (older than ``older_than_s``)."""
        now = time.time()
        removed = 0
        for d in [self.root, *self.layout.folders()]:
            try:
                entries = list(os.scandir(d))
            except FileNotFoundError:
                continue
            for e in entries:
                if e.name.startswith(TMP_PREFIX) or e.name.endswith(".done"):
                    try:
                        if now - e.stat().st_mtime > older_than_s:
                            os.unlink(e.path)
                            removed += 1
                    except FileNotFoundError:
                        pass
                    except IsADirectoryError:  # a folder where a temp file or marker belongs
                        quarantine(
                            self.layout,
                            Path(e.path),
                            FOLDER,
                            consequence="nothing else is affected",
                        )
        return removed

    def compact(self, *, at_files: int = COMPACT_AT_FILES) -> int:
        """Merge small Parquet files into few large ones; returns files removed.

        Safe with concurrent readers and writers: the merged file is written first
        (readers deduplicate the overlap), then the merged inputs are deleted.
        """
        removed = 0
        for folder, is_records in ((self.layout.records, True), (self.layout.metrics, False)):
            files = parquet_files(folder)
            if len(files) < at_files:
                continue
            small = []
            for f in files:
                try:
                    if pq.ParquetFile(f).metadata.num_rows < COMPACT_MAX_ROWS // 2:
                        small.append(f)
                except (OSError, pa.ArrowException):
                    continue
            if len(small) < 2:
                continue
            tables = []
            for f in small:
                try:
                    tables.append(read_verified(f))  # never launder a damaged file
                except FileNotFoundError:
                    return removed  # another process is compacting: leave it to them
                except (OSError, pa.ArrowException):
                    read_parquet_folder(self.layout, folder)  # quarantines the bad one
                    return removed
            merged = concat(tables)
            merged = dedupe_latest(merged) if is_records else dedupe_steps(merged)
            for start in range(0, merged.num_rows, COMPACT_MAX_ROWS):
                write_parquet(
                    folder / new_file_name("compact"), merged.slice(start, COMPACT_MAX_ROWS)
                )
            for f in small:
                try:
                    f.unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed
