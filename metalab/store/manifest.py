"""The manifest's history of definitions, kept true as the experiment changes.

A store belongs to one experiment (its name), but the experiment's *definition* (its
version, its operation's version, its context's fingerprint) may change between
sweeps: each change starts new run ids.  The manifest is created once, exclusively
(:func:`metalab.store.store.create_exclusive`); every sweep then updates it by atomic
replace (temp file, fsync, rename), sealed with its checksum like the original:

* the top-level description (versions, context fingerprint, params, seeds, ``runs``)
  is the one of the latest sweep;
* ``definitions`` lists every definition the store has seen, oldest first, each with
  its first and latest sweep (id and start time), its number of sweeps and the number
  of runs its latest sweep planned.

A manifest written before the history existed has no ``definitions``: the first update
rebuilds it from the sweep files.  Concurrent drivers serialise their updates with
``flock`` on ``sweeps/`` where it exists, and every writer checks that its entry survived.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from typing import Any

from .atomic import atomic_write_text
from .checksum import seal_json
from .layout import Layout
from .records import CONTEXT_FINGERPRINT, DEFINITION_COLUMNS, EXPERIMENT_VERSION
from .verify import read_manifest_file, read_sweep_files

__all__ = [
    "HISTORY",
    "definition_of",
    "history_from_sweeps",
    "manifest_text",
    "note_definition",
    "same_definition",
]

#: Manifest key of the history of definitions.
HISTORY = "definitions"
#: Manifest keys describing the experiment as of the latest sweep.
_DESCRIPTION = (
    *DEFINITION_COLUMNS,
    "description",
    "operation",
    "params",
    "seeds",
    "runs",
)


def manifest_text(manifest: dict[str, Any]) -> str:
    """The file text of a manifest or sweep file (sealed JSON, sorted keys)."""
    return json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"


def definition_of(info: dict[str, Any]) -> dict[str, str | None]:
    """The definition columns of a manifest, sweep file or history entry (None: unknown)."""
    out: dict[str, str | None] = {}
    for key in DEFINITION_COLUMNS:
        value = info.get(key)
        out[key] = None if value is None else str(value)
    return out


def same_definition(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two definitions are the same; an unknown context fingerprint (a sweep file
    written before sweep files recorded it) matches any."""
    da, db = definition_of(a), definition_of(b)
    for key in DEFINITION_COLUMNS:
        if key == CONTEXT_FINGERPRINT and (da[key] is None or db[key] is None):
            continue
        if da[key] != db[key]:
            return False
    return True


def _entry(info: dict[str, Any], sweep: str, started: float, planned: Any) -> dict[str, Any]:
    return {
        **definition_of(info),
        "first_sweep": sweep,
        "first_started": started,
        "latest_sweep": sweep,
        "latest_started": started,
        "sweeps": 1,
        "planned": planned,
    }


def _add(
    history: list[dict[str, Any]], info: dict[str, Any], sweep: str, started: float, planned: Any
) -> None:
    """Count one sweep of ``info``'s definition in ``history`` (in place)."""
    for e in history:
        if not same_definition(e, info):
            continue
        if e.get(CONTEXT_FINGERPRINT) is None:  # learnt from a newer sweep file
            e[CONTEXT_FINGERPRINT] = definition_of(info)[CONTEXT_FINGERPRINT]
        if sweep in (e.get("first_sweep"), e.get("latest_sweep")):
            e["planned"] = planned  # the same sweep noted again
            return
        if started >= float(e.get("latest_started") or 0):
            e.update(latest_sweep=sweep, latest_started=started, planned=planned)
        e["sweeps"] = int(e.get("sweeps") or 0) + 1
        return
    history.append(_entry(info, sweep, started, planned))


def history_from_sweeps(sweeps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history of definitions told by sweep files (oldest first)."""
    history: list[dict[str, Any]] = []
    for s in sweeps:
        if s.get(EXPERIMENT_VERSION) is None or not s.get("sweep"):
            continue
        started = float(s.get("started") or 0)
        _add(history, s, str(s["sweep"]), started, s.get("planned"))
    return history


@contextlib.contextmanager
def _locked(layout: Layout) -> Iterator[None]:
    """Serialise manifest updates of drivers on this machine (no-op without ``flock``)."""
    try:
        import fcntl
    except ImportError:  # Windows: the check after writing still catches a lost update
        yield
        return
    try:
        # The lock is on the sweeps/ folder itself: no lock file to leave behind.
        fd = os.open(layout.sweeps, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _updated(
    existing: dict[str, Any],
    now: dict[str, Any],
    layout: Layout,
    sweep: str,
    started: float,
    planned: int,
) -> dict[str, Any]:
    new = dict(existing)
    history = existing.get(HISTORY)
    if not isinstance(history, list):  # written before the history existed
        history = history_from_sweeps(read_sweep_files(layout))
    history = [dict(e) for e in history if isinstance(e, dict)]
    _add(history, now, sweep, started, planned)
    for key in _DESCRIPTION:
        if key in now:
            new[key] = now[key]
    new["runs"] = planned
    new[HISTORY] = history
    new["updated"] = time.time()
    return new


def note_definition(
    layout: Layout, now: dict[str, Any], *, sweep: str, started: float, planned: int
) -> dict[str, Any]:
    """Record that ``sweep`` runs the experiment described by ``now`` (planning ``planned``
    runs): the manifest's description becomes ``now`` and its history counts the sweep.

    Returns the manifest as written ({} when the store has no manifest).
    """
    new: dict[str, Any] = {}
    for _ in range(5):
        with _locked(layout):
            existing = read_manifest_file(layout)
            if not existing:
                return {}
            new = _updated(existing, now, layout, sweep, started, planned)
            atomic_write_text(layout.manifest, manifest_text(seal_json(new)))
        # Another machine's driver may have replaced the file with an older history
        # meanwhile: write again until this sweep (or a later one) is in it.
        check = read_manifest_file(layout).get(HISTORY) or []
        if any(
            isinstance(e, dict)
            and same_definition(e, now)
            and float(e.get("latest_started") or 0) >= started
            for e in check
        ):
            return new
    return new
