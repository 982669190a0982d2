"""Verified reading of a store's JSON files, and the totals check for vanished files.

The manifest and the sweep files carry a CRC-32 (:func:`metalab.store.checksum.seal_json`).
A damaged sweep file is quarantined with a warning (it only describes its sweep); a
damaged manifest raises :class:`~metalab.errors.StoreError` naming the repair, because
``run()`` must not guess which experiment owns the store.

The totals (:mod:`metalab.store.ledger`): each sweep file records how many run records
and stepped-metric points the store held when the sweep ended; a reader that finds
fewer warns that data vanished instead of returning less in silence.
"""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreError
from .atomic import TMP_PREFIX
from .checksum import FOLDER, parquet_footer_damage, read_sealed_json, sha256_file
from .layout import Layout
from .ledger import TOTAL_KEYS, file_totals, shortfall
from .paths import quarantine
from .reader import (
    DamagedFileWarning,
    journal_tables,
    parquet_files,
    quarantine_parquet,
    unreadable,
)

Ledger = dict[str, list[int]]


def read_manifest_file(layout: Layout) -> dict[str, Any]:
    """The verified manifest ({} when there is none); StoreError when it is damaged."""
    path = layout.manifest
    try:
        obj, reason = read_sealed_json(path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise unreadable(path, exc) from exc
    if obj is None:
        raise StoreError(
            errno.EIO,
            f"damaged manifest {path} ({reason}). Run `metalab repair {layout.root}`: it "
            "moves the file to quarantine/ and rebuilds the manifest from the sweep files. "
            f"By hand: move {path} out of the store; the next metalab.run writes a new one",
            str(path),
        )
    return obj


def read_sweep_files(layout: Layout) -> list[dict[str, Any]]:
    """Every verified sweep file, oldest first; damaged ones are quarantined with a warning.

    Each gains ``state``: ``running``, ``interrupted`` (its driver is gone without
    ending it) or the recorded end ``status`` (see :mod:`metalab.store.sweep_files`).
    """
    from .sweep_files import sweep_state

    try:
        names = sorted(os.listdir(layout.sweeps))
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        if not n.endswith(".json") or n.startswith(TMP_PREFIX):
            continue
        path = layout.sweeps / n
        try:
            obj, reason = read_sealed_json(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise unreadable(path, exc) from exc
        if obj is None:
            quarantine(
                layout,
                path,
                reason or "damaged",
                consequence="that sweep's options, counts and provenance are lost; the "
                "records of its runs are not affected",
            )
            continue
        try:
            mtime: float | None = os.stat(path, follow_symlinks=False).st_mtime
        except OSError:
            mtime = None
        obj["state"] = sweep_state(obj, mtime)
        out.append(obj)
    out.sort(key=_started)
    return out


def _started(info: dict[str, Any]) -> float:
    t = info.get("started")
    return float(t) if isinstance(t, (int, float)) else 0.0


def footer_kvs(layout: Layout, folder: Path) -> list[dict[bytes, bytes] | None]:
    """The key-value metadata of every file of a folder (footers verified; damaged ones
    are quarantined and left out)."""
    out = []
    for f in parquet_files(folder):
        try:
            reason = parquet_footer_damage(f)
            if reason is None:
                out.append(pq.read_metadata(f).metadata)
                continue
        except FileNotFoundError:
            continue  # compacted away; its data is in the merged file
        except PermissionError as exc:
            raise unreadable(f, exc) from exc
        except (pa.ArrowException, OSError) as exc:
            reason = str(exc).splitlines()[0][:200]
        quarantine_parquet(layout, f, reason)
    return out


def store_totals(
    layout: Layout,
    records: list[dict[bytes, bytes] | None] | None = None,
    journals: Iterable[pa.Table] = (),
) -> list[int] | None:
    """``[records, points]`` the store holds now, by the ledgers (None: unknown).

    ``records`` gives the records files' footers when the caller has read them;
    ``journals`` the record tables of the journals (read when not given).
    """
    if records is None:
        records = footer_kvs(layout, layout.records)
        journals = journal_tables(layout)[0]
    recs = file_totals(records)
    points = file_totals(footer_kvs(layout, layout.metrics))
    if recs is None or points is None:
        return None
    return [recs[0] + sum(t.num_rows for t in journals), points[1]]


def totals_for_sweep_file(layout: Layout) -> dict[str, int]:
    """``{"store_records": n, "store_points": m}`` for the sweep file of a sweep that ends."""
    totals = store_totals(layout)
    return {} if totals is None else dict(zip(TOTAL_KEYS, totals, strict=True))


def warn_missing(layout: Layout, totals: list[int] | None, where: str | None = None) -> None:
    """Warn (naming the store: ``where``, else its folder) when it holds less than a
    sweep file says it held."""
    if totals is None:
        return
    for m in shortfall(read_sweep_files(layout), totals):
        warnings.warn(f"store {where or layout.root}: {m}", DamagedFileWarning, stacklevel=3)


def verify_artifact(
    layout: Layout, path: Path, sha256: str, what: str, *, run_id: str = "", name: str = ""
) -> None:
    """Check an artifact file against its recorded sha256 before it is loaded.

    Raises StoreError when it is missing, and ArtifactIntegrityError when it is damaged
    (a folder, or other bytes); a damaged file is first moved to ``quarantine/``, so
    that ``resume=True`` runs its run again.  ``what`` names it ("artifact 'x' of run ...").
    """
    from ..errors import ArtifactIntegrityError

    redo = "run the experiment again with resume=True: it redoes the runs whose artifacts "
    if not os.path.lexists(path):
        raise StoreError(
            errno.ENOENT,
            f"{what}: the file {path} is missing (deleted or moved after the run); "
            f"{redo}are missing",
            str(path),
        )
    if os.path.isdir(path):
        reason = FOLDER
    else:
        try:
            digest = sha256_file(path)
        except OSError as exc:
            raise unreadable(path, exc) from exc
        if digest == sha256:
            return
        reason = f"sha256 {digest[:12]}... does not match the recorded {sha256[:12]}..."
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedFileWarning)  # the error below says it
        quarantine(layout, path, reason)
    where = (
        "it was moved to quarantine/"
        if not os.path.lexists(path)
        else "move it out of the store (it could not be moved to quarantine/)"
    )
    raise ArtifactIntegrityError(
        errno.EIO,
        f"{what} is damaged: {reason}; the file {path} was changed or corrupted after the "
        f"run wrote it, and {where}. To get it back, {redo}are missing or damaged",
        str(path),
        run_id=run_id,
        name=name,
    )


__all__ = [
    "read_manifest_file",
    "read_sweep_files",
    "store_totals",
    "totals_for_sweep_file",
    "verify_artifact",
    "warn_missing",
]
