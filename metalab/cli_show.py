"""What ``metalab show`` prints: the experiment, its definitions, its sweeps, its runs.

Every count comes from the records the store actually holds (``Results``), never from
a plan: a plan is printed as a plan ("planned 4"), next to what was recorded.  A sweep
whose driver died without ending it reads as ``interrupted`` (see
:mod:`metalab.store.sweep_files`).  Used by :mod:`metalab.cli`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .results import Results
    from .store import Store

__all__ = ["fmt_time", "manifest_lines", "sweep_lines"]

#: Manifest entries ``metalab show`` prints, in order (then params and seeds as JSON).
MANIFEST_KEYS = (
    "experiment experiment_version operation operation_version context_fingerprint "
    "description created updated"
).split()


def fmt_time(t: Any) -> str:
    """Seconds since the epoch as local ``YYYY-mm-dd HH:MM:SS`` (``-`` when unknown)."""
    if not isinstance(t, (int, float)):
        return "-"
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def manifest_lines(store: Store, manifest: dict[str, Any]) -> Iterator[str]:
    """The experiment as of its latest sweep, and the history of its definitions."""
    from .params.order import without_order
    from .results.definitions import describe
    from .store.manifest import HISTORY, same_definition

    yield f"{'store':<20} {store.location}"
    for key in MANIFEST_KEYS:
        if key in manifest and manifest[key] != "":
            value = fmt_time(manifest[key]) if key in ("created", "updated") else manifest[key]
            yield f"{key:<20} {value}"
    for key in ("params", "seeds"):
        if key in manifest:
            shown = without_order(manifest[key]) if key == "params" else manifest[key]
            yield f"{key:<20} {json.dumps(shown, sort_keys=True)}"
    history = [e for e in manifest.get(HISTORY) or [] if isinstance(e, dict)]
    if len(history) > 1:
        yield f"\ndefinitions ({len(history)}, oldest first)"
        for e in history:
            current = " (current)" if same_definition(e, manifest) else ""
            yield (
                f"  {describe(e)}: {e.get('sweeps', '?')} sweep(s) from "
                f"{fmt_time(e.get('first_started'))} to {fmt_time(e.get('latest_started'))}, "
                f"latest planned {e.get('planned', '?')}{current}"
            )


def _recorded(every: Results) -> dict[str, dict[str, int]]:
    """sweep id -> {status: current records} over every definition."""
    from .store.records import STATUS, SWEEP

    df = every.select(SWEEP, STATUS).to_pandas()
    out: dict[str, dict[str, int]] = {}
    for (sweep, status), n in df.groupby([SWEEP, STATUS]).size().items():
        out.setdefault(str(sweep), {})[str(status)] = int(n)
    return out


def sweep_lines(store: Store, every: Results) -> Iterator[str]:
    """One line per sweep: when, its state, its plan, and the records it left in the store."""
    sweeps = store.read_sweeps()
    if not sweeps:
        return
    recorded = _recorded(every)
    yield f"\nsweeps ({len(sweeps)})"
    for s in sweeps:
        counts = recorded.get(str(s.get("sweep")), {})
        stored = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"
        yield (
            f"  {s.get('sweep', '?')}  {fmt_time(s.get('started'))}  "
            f"{s.get('state', s.get('status', '?')):<11} "
            f"v{s.get('experiment_version', '?')}/op {s.get('operation_version', '?')}: "
            f"planned {s.get('planned', '?')}, to run {s.get('to_run', '?')}, "
            f"skipped {s.get('skipped', '?')}; records now in the store: {stored}  "
            f"[{s.get('executor', '')}]"
        )
