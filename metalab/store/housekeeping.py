"""Store housekeeping: artifact checks, what killed writers leave behind, and compaction.

Every path here comes from the store's own listing or from checked names
(:mod:`metalab.store.paths`): a link is never followed, and only provably damaged entries
move to ``quarantine/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import StoreError
from .paths import (
    artifact_parts,
    cannot_read,
    open_dir,
    plain_files,
    quarantine,
    read_file,
    remove_stale,
)
from .reader import (
    DamagedFileWarning,
    concat,
    dedupe_steps,
    may_have_duplicates,
    read_parquet_folder,
    read_verified,
)
from .sweep_files import local_driver_alive

if TYPE_CHECKING:
    from .store import Store


# artifacts ---------------------------------------------------------------------------------
def check_artifacts(store: Store, table: pa.Table | None) -> set[str]:
    """Run ids whose artifacts are missing, not the size recorded, or unsafe (see Store)."""
    if table is None:
        try:
            table = store.records(columns=["run_id", "artifacts"])
        except StoreError:
            raise
        except (OSError, pa.ArrowException):
            return set()
    if "artifacts" not in table.column_names or table.num_rows == 0:
        return set()
    table = table.filter(pc.is_valid(table.column("artifacts")))
    # A remote store: one listing (a request per 1,000 objects), not a request per file.
    listing = store.mirror.remote.listing("artifacts/") if store.mirror is not None else None
    bad: set[str] = set()
    for run_id, raw in zip(
        table.column("run_id").to_pylist(), table.column("artifacts").to_pylist(), strict=True
    ):
        if not _run_artifacts_ok(store, run_id, raw, listing):
            bad.add(run_id)
    return bad


def _warn(text: str) -> None:
    warnings.warn(
        f"{text}; the run is treated as not run, so resume=True runs it again",
        DamagedFileWarning,
        stacklevel=5,
    )


def _run_artifacts_ok(
    store: Store, run_id: str, raw: str, listing: dict[str, tuple[int, str]] | None
) -> bool:
    """Check one run's artifact entries: one ``lstat`` per file (and one for its folder)."""
    where = f"the record of run {run_id!r}"
    try:
        entries = json.loads(raw)
    except ValueError:
        _warn(f"the artifact list in {where} is not JSON")
        return False
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        _warn(f"the artifact list in {where} is not a list of entries")
        return False
    ok = True
    folder_checked = False
    for entry in entries:
        try:
            parts = artifact_parts(entry.get("path"), run_id, where)
        except StoreError as exc:
            _warn(str(exc))
            ok = False
            continue
        if listing is not None:
            ok = _listed_ok(store, run_id, "/".join(parts), entry, listing) and ok
            continue
        path = store.root.joinpath(*parts)
        if not folder_checked:
            folder_checked = True
            if not _run_folder_ok(store, path.parent):
                return False
        ok = _artifact_file_ok(store, run_id, path, entry) and ok
    return ok


def _listed_ok(
    store: Store, run_id: str, rel: str, entry: dict[str, Any], listing: dict[str, Any]
) -> bool:
    """One artifact of a remote store, checked against the bucket's listing."""
    seen = listing.get(rel)
    if seen is None:
        _warn(f"artifact {store.location}/{rel} of run {run_id} is missing")
        return False
    if seen[0] != entry.get("size", seen[0]):
        _warn(
            f"artifact {store.location}/{rel} has {seen[0]} bytes, the run recorded {entry['size']}"
        )
        return False
    return True


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise cannot_read(path, exc) from exc


def _run_folder_ok(store: Store, folder: Path) -> bool:
    st = _lstat(folder)
    if st is None or stat.S_ISDIR(st.st_mode):
        return True  # a missing folder: each file is reported missing
    quarantine(store.layout, folder, "a link or file where the run's artifact folder belongs")
    return False


def _artifact_file_ok(store: Store, run_id: str, path: Path, entry: dict[str, Any]) -> bool:
    st = _lstat(path)
    if st is None:
        _warn(f"artifact file {path} of run {run_id} is missing")
        return False
    if not stat.S_ISREG(st.st_mode):
        quarantine(store.layout, path, "a link or folder, not a file")
        return False
    if st.st_size == entry.get("size", st.st_size):
        return True
    quarantine(store.layout, path, f"{st.st_size} bytes, the run recorded {entry.get('size')}")
    return False


# what killed writers leave behind ------------------------------------------------------------
def clean_store(store: Store, older_than_s: float) -> int:
    """Temp files, done markers, artifact-folder temps and orphaned payloads (see Store)."""
    now = time.time()
    removed = 0
    layout = store.layout
    for parts in [[], *([d.name] for d in layout.folders())]:
        with contextlib.suppress(FileNotFoundError):
            removed += remove_stale(store.root, parts, older_than_s, now, done=True)
    removed += _clean_artifact_folders(store, older_than_s, now)
    removed += _clean_payloads(store, older_than_s, now)
    return removed


def _clean_artifact_folders(store: Store, older_than_s: float, now: float) -> int:
    """Remove stale temps in ``artifacts/*/`` (one listing per run folder); links in place
    of run folders are quarantined."""
    arts = store.layout.artifacts
    try:
        with open_dir(store.root, ["artifacts"]) as fd:
            with os.scandir(fd if fd is not None else arts) as it:
                entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    except FileNotFoundError:
        return 0
    removed = 0
    for name, is_dir in entries:
        if not is_dir:
            if os.path.islink(arts / name):
                quarantine(
                    store.layout, arts / name, "a link where a run's artifact folder belongs"
                )
            continue
        with contextlib.suppress(FileNotFoundError, PermissionError):
            removed += remove_stale(store.root, ["artifacts", name], older_than_s, now)
    return removed


def _clean_payloads(store: Store, older_than_s: float, now: float) -> int:
    """Delete ``sweeps/<sweep>.payload`` files whose sweep's driver is gone."""
    removed = 0
    for path in plain_files(store.layout.sweeps, ".payload"):
        sweep = path.name[: -len(".payload")]
        if _driver_gone(store, sweep, path, older_than_s, now):
            with contextlib.suppress(FileNotFoundError, PermissionError):
                os.unlink(path)
                removed += 1
    return removed


def _driver_gone(store: Store, sweep: str, payload: Path, older_than_s: float, now: float) -> bool:
    try:
        info = json.loads(read_file(store.layout.sweeps / f"{sweep}.json").decode("utf-8"))
    except (FileNotFoundError, ValueError, StoreError):
        info = None
    if not isinstance(info, dict):  # no sweep file to ask: go by age alone
        st = _lstat(payload)
        return st is not None and now - st.st_mtime > older_than_s
    if "ended" in info:
        return True
    return local_driver_alive(info) is False  # another host's driver may still run


# compaction ------------------------------------------------------------------------------
def drop_repeated_rows(table: pa.Table) -> pa.Table:
    """Keep one row per (run_id, attempt, started_at, ended_at): every attempt stays.

    Overlapping compactions (two drivers at once) can merge the same row twice; those
    copies go. Different attempts of a run (a failure, then its re-run) are all kept.
    """
    if table.num_rows < 2 or not may_have_duplicates(table.column("run_id")):
        return table
    import numpy as np

    def ints(name: str) -> Any:
        if name not in table.column_names:
            return np.zeros(table.num_rows, dtype=np.int64)
        return table.column(name).cast(pa.int64()).fill_null(-1).to_numpy(zero_copy_only=False)

    codes = pc.dictionary_encode(table.column("run_id")).combine_chunks().indices
    keys = [codes.to_numpy(zero_copy_only=False), *map(ints, ("attempt", "started_at", "ended_at"))]
    order = np.lexsort(keys[::-1])  # the last key sorts first: run id
    same = np.ones(len(order) - 1, dtype=bool)
    for k in keys:
        ks = k[order]
        same &= ks[1:] == ks[:-1]
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = ~same
    return table.take(pa.array(np.sort(order[keep])))


def compact(store: Store, at_files: int) -> int:
    """Merge small Parquet files into few large ones, keeping every attempt (see Store)."""
    from .files import COMPACT_MAX_ROWS, new_file_name, write_parquet

    layout = store.layout
    removed = 0
    for folder, is_records in ((layout.records, True), (layout.metrics, False)):
        small = _small_files(folder, at_files)
        if len(small) < 2:
            continue
        tables = []
        for f in small:
            try:
                tables.append(read_verified(f))  # never launder a damaged file
            except (FileNotFoundError, PermissionError):
                return removed  # compacted by another process, or not ours to read: leave it
            except (OSError, pa.ArrowException):
                read_parquet_folder(layout, folder)  # quarantines the damaged one
                return removed
        merged = concat(tables)
        merged = drop_repeated_rows(merged) if is_records else dedupe_steps(merged)
        for start in range(0, merged.num_rows, COMPACT_MAX_ROWS):
            write_parquet(folder / new_file_name("compact"), merged.slice(start, COMPACT_MAX_ROWS))
        for f in small:
            try:
                f.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def _small_files(folder: Path, at_files: int) -> list[Path]:
    """The files of a folder worth merging (none when it has fewer than ``at_files``)."""
    from .files import COMPACT_MAX_ROWS

    files = plain_files(folder, ".parquet")
    if len(files) < at_files:
        return []
    small = []
    for f in files:
        try:
            if pq.ParquetFile(f).metadata.num_rows < COMPACT_MAX_ROWS // 2:
                small.append(f)
        except (OSError, pa.ArrowException):
            continue  # unreadable or damaged: readers deal with it, compaction leaves it
    return small


__all__ = ["check_artifacts", "clean_store", "compact", "drop_repeated_rows"]
