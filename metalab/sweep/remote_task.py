"""Partition tasks of a sweep into a remote store (``s3://...``): a private local mirror.

A worker runs each partition in a fresh local folder (see :mod:`metalab.store.mirror`)
holding what the partition needs from the bucket (the journals and done marker of
earlier attempts at it, the checkpoints of their unfinished runs), runs it there with
the local code, and uploads what it wrote itself: the workers write to the bucket
directly; the driver never relays a record.

Durability: the journal is uploaded in batches, after the flush that follows
:data:`BATCH_RUNS` runs or :data:`BATCH_S` seconds since the last upload, whichever
comes first; a worker killed mid-partition loses at most the runs since its last batch
(so at most ``BATCH_RUNS`` runs, none finished more than ``BATCH_S`` seconds and one run
before the kill), never a finished batch: the next attempt reads the batches.  At the
partition's end its Parquet files and done marker are uploaded before its journal is
deleted.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..store.journal import Journal, list_journals
from ..store.layout import Layout
from ..store.mirror import Mirror, new_cache_dir
from ..store.records import FAILED, PRUNED, SUCCESS

if TYPE_CHECKING:
    from .partition import SweepTask

#: Upload the journal after this many runs at most (see the module docstring).
BATCH_RUNS = int(os.environ.get("METALAB_REMOTE_BATCH_RUNS", "1024"))
#: ... or after this many seconds at most.
BATCH_S = float(os.environ.get("METALAB_REMOTE_BATCH_S", "5"))
#: A journal flushes every few runs (``JournalWriter.flush_every``), counted as this many.
_RUNS_PER_FLUSH = 4


#: Largest partition on a remote store: a partition's journal is uploaded whole with
#: every batch, so its size bounds the bytes of each upload (4,096 runs: ~2x the
#: journal's bytes in all).
REMOTE_MAX_PARTITION = 4096


def remote_partition_size(n: int, n_workers: int) -> int | None:
    """Runs per partition for ``n`` runs into a remote store: metalab's usual sizes,
    unless a partition would exceed :data:`REMOTE_MAX_PARTITION` (None: the usual)."""
    from ..descriptors import partition_bounds

    bounds = partition_bounds(n, n_workers)
    widest = max(b - a for a, b in itertools.pairwise(bounds))
    return REMOTE_MAX_PARTITION if widest > REMOTE_MAX_PARTITION else None


class BatchUploads:
    """Called after every journal flush: pushes the mirror when a batch is due."""

    def __init__(self, mirror: Mirror) -> None:
        self.mirror = mirror
        self.flushes = 0
        self.last = time.monotonic()

    def __call__(self) -> None:
        self.flushes += 1
        now = time.monotonic()
        if self.flushes * _RUNS_PER_FLUSH >= BATCH_RUNS or now - self.last >= BATCH_S:
            self.mirror.push()
            self.flushes, self.last = 0, now


def _unfinished(journals: list[Path]) -> set[str]:
    """Runs started or requeued by earlier attempts (their checkpoints are needed)."""
    ids: set[str] = set()
    for path in journals:
        j = Journal(path)
        ids.update(j.started)
        ids.update(o[0] for o in j.outcomes if o[1] not in (SUCCESS, FAILED, PRUNED))
    return ids


@contextlib.contextmanager
def localized(task: SweepTask, part: int) -> Iterator[tuple[SweepTask, Mirror | None]]:
    """``(task, mirror)``: for a remote store, the task pointed at a fresh local mirror
    of what partition ``part`` needs, pushed at the end and removed; else ``task``."""
    if task.remote is None:
        yield task, None
        return
    local = new_cache_dir("metalab-part-")
    try:
        mirror = Mirror(task.remote, local)
        layout = Layout(local)
        for folder in layout.folders():
            folder.mkdir(parents=True, exist_ok=True)
        mirror.pull(f"journal/{task.sweep}-{part:06d}", lazy=())
        for run_id in sorted(_unfinished(list_journals(layout.journal))):
            mirror.fetch_folder(f"artifacts/{run_id}/")
        try:
            yield (
                replace(task, store_root=str(local), remote=None, on_flush=BatchUploads(mirror)),
                mirror,
            )
        finally:
            mirror.push()  # also after an error or a hand-over: what is done is kept
    finally:
        shutil.rmtree(local, ignore_errors=True)
