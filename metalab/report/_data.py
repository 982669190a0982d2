"""Everything a report shows, read from one store through ``Results`` into pandas objects."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._text import MISSING
from ..store.records import RUN_ID, STATUS, SUCCESS

if TYPE_CHECKING:
    import pandas as pd

    from ..results import Results
    from ..store import Store


@dataclass
class ReportData:
    """The content of a report: provenance, runs, and stepped metrics."""

    root: str  # the store's folder or URL, as shown
    manifest: dict[str, Any]
    sweeps: list[dict[str, Any]]
    runs: pd.DataFrame  # one row per run, user column names (full record)
    params: list[str]  # every parameter column
    swept: list[str]  # parameters with more than one value
    metrics: list[str]  # numeric scalar metric columns
    steps: pd.DataFrame  # Results.series(): run_id, params, replicate, name, step, value
    counts: dict[str, int] = field(default_factory=dict)
    #: Runs planned by the latest sweep and not recorded (running or interrupted).
    pending: int = 0
    #: Why runs of the store are not shown (other definitions), or "".
    note: str = ""
    store: Any = None  # the open Store

    @property
    def title(self) -> str:
        return str(self.manifest.get("experiment") or self.root.rstrip("/").rsplit("/", 1)[-1])


def hashable(value: Any) -> Any:
    """A value usable as a group key (lists and dicts become JSON text, NaN becomes None)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def config_label(config: dict[str, Any]) -> str:
    """``lr=0.01, depth=3``."""
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in config.items()) or "all runs"


def fmt_value(v: Any) -> str:
    """Short text of a param or metric value for tables and legends."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _load_results(store: Store, definitions: str) -> tuple[Results, str]:
    """``load_results`` of the store, and the note of runs of other definitions left out."""
    import warnings

    from ..errors import OtherDefinitionsWarning
    from ..results import load_results

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OtherDefinitionsWarning)
        results = load_results(store, definitions=definitions)
    note = ""
    for w in caught:
        msg = w.message
        if isinstance(msg, OtherDefinitionsWarning):
            note = (
                f"This report shows the current definition ({msg.current}); {msg.hidden} "
                f"run{'s' if msg.hidden != 1 else ''} of {msg.definitions} other "
                f"definition{'s' if msg.definitions != 1 else ''} are left out. See every "
                "run, grouped by definition, with: metalab report --definitions all"
            )
        else:  # a damaged file...: reported as usual
            warnings.warn_explicit(msg, w.category, w.filename, w.lineno)
    return results, note


def load(store: Store, *, definitions: str = "current", reduce: str = "last") -> ReportData:
    """Read a store through ``Results``: manifest, sweeps, current records, stepped metrics.

    A stepped metric's column is its ``reduce`` value per run, named ``loss[last]``.
    """
    import pandas as pd

    from ..results.definitions import varying
    from ..results.naming import PENDING

    results, note = _load_results(store, definitions)
    runs = results.to_pandas(full=True)
    params = [c for c in results.param_names() if c in runs.columns]
    metrics = [
        m
        for m in results.metric_names()
        if m in runs.columns and pd.api.types.is_numeric_dtype(runs[m])
    ]
    runs, metrics = _reduced(results, runs, metrics, reduce)
    for p in params:
        if runs[p].dtype == object:
            runs[p] = runs[p].map(hashable)
    swept = [p for p in params if runs[p].nunique(dropna=False) > 1]
    # Runs of several definitions (definitions="all") are grouped apart, never pooled.
    swept = [*varying(runs, swept), *swept]
    steps = results.series()
    for p in swept:
        if p in steps.columns and steps[p].dtype == object:
            steps[p] = steps[p].map(hashable)
    return ReportData(
        root=store.location,
        store=store,
        manifest=store.read_manifest(),
        sweeps=store.read_sweeps(),
        runs=runs,
        params=params,
        swept=swept,
        metrics=metrics,
        steps=steps,
        counts={k: v for k, v in results.counts().items() if v and k != PENDING},
        pending=results.pending,
        note=note,
    )


def _reduced(
    results: Any, runs: pd.DataFrame, metrics: list[str], reduce: str
) -> tuple[pd.DataFrame, list[str]]:
    """``runs`` with each stepped metric as ``name[reduce]`` (``Results.table`` decides)."""
    table = results.table(as_dataframe=True, reduce=reduce)
    suffix = f"[{reduce}]"
    named = {c[: -len(suffix)]: c for c in table.columns if c.endswith(suffix)}
    named = {m: c for m, c in named.items() if m in runs.columns and c not in runs.columns}
    if not named:
        return runs, metrics
    by_id = table.set_index(RUN_ID)
    for m, c in named.items():
        runs.insert(runs.columns.get_loc(m), c, runs[RUN_ID].map(by_id[c]).to_numpy())
    runs = runs.drop(columns=list(named))
    return runs, [named.get(m, m) for m in metrics]


def summary(data: ReportData) -> pd.DataFrame:
    """One row per configuration: ``runs``, ``success`` (a count) and mean/std of each metric."""
    import pandas as pd

    from ..results.analysis import group_stats

    runs = data.runs
    keys = data.swept
    if not len(runs):
        return pd.DataFrame()
    ok = runs[STATUS] == SUCCESS
    df = runs.assign(_ok=ok.astype("int64"))
    df = df.assign(_key=0) if not keys else df
    groups = df.groupby(keys or ["_key"], dropna=False, sort=True)
    out = groups.agg(**{"runs": (RUN_ID, "size"), SUCCESS: ("_ok", "sum")}).reset_index()
    out = out.drop(columns=["_key"]) if not keys else out
    if data.metrics and ok.any():
        stats = group_stats(runs[ok], keys, data.metrics, ("mean", "std"))
        out = out.merge(stats, on=keys, how="left") if keys else pd.concat([out, stats], axis=1)
    return out
