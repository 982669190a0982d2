"""Done markers: ``journal/<sweep>-<part>.done``, a partition's records are in Parquet.

A finished partition whose summary is lost with its worker is recomputed by Dask; the
marker (holding the partition's counts) makes that recomputation return at once instead
of running runs again.  The driver deletes the markers of its sweep when the sweep ends.
"""

from __future__ import annotations

import json
from pathlib import Path

from .atomic import atomic_write_text
from .layout import Layout

__all__ = ["done_marker", "read_done_marker", "write_done_marker"]


def done_marker(layout: Layout, sweep: str, part: int) -> Path:
    """``journal/<sweep>-<part>.done``: this partition's records are in Parquet."""
    return layout.journal / f"{sweep}-{part:06d}.done"


def write_done_marker(layout: Layout, sweep: str, part: int, counts: dict[str, int]) -> None:
    """Mark partition ``part`` of ``sweep`` done, with its counts."""
    atomic_write_text(done_marker(layout, sweep, part), json.dumps(counts))


def read_done_marker(layout: Layout, sweep: str, part: int) -> dict[str, int] | None:
    """The counts of a done partition, or None when it is not marked done."""
    try:
        return dict(json.loads(done_marker(layout, sweep, part).read_text()))
    except (FileNotFoundError, ValueError):
        return None
