"""Everything a report shows, read from one store into plain Python and pandas objects."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ..store import Store

#: Record columns that are neither params nor metrics (after ``Results`` renaming).
_RECORD_COLUMNS = {
    "run_id",
    "status",
    "attempt",
    "replicate",
    "seed",
    "params",
    "started_at",
    "ended_at",
    "duration_s",
    "error_type",
    "error_message",
    "traceback",
    "artifacts",
    "logs",
    "host",
    "pid",
    "worker",
    "sweep",
    "experiment",
}


@dataclass
class ReportData:
    """The content of a report: provenance, runs, and stepped metrics."""

    root: Path
    manifest: dict[str, Any]
    sweeps: list[dict[str, Any]]
    runs: pd.DataFrame  # one row per run, user column names (full record)
    params: list[str]  # every parameter column
    swept: list[str]  # parameters with more than one value
    metrics: list[str]  # numeric scalar metric columns
    steps: pd.DataFrame  # run_id, name, step, value (+ config key), current sweep only
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return str(self.manifest.get("experiment") or self.root.name)


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
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:.4g}"
    return str(v)


def load(store: Store) -> ReportData:
    """Read a store's manifest, sweeps, current records and stepped metrics."""
    import pandas as pd

    from ..results.results import Results
    from ..store import read_steps

    results = Results([store])
    runs = results.to_pandas(full=True)
    params = [c for c in results.param_names() if c in runs.columns]
    metrics = []
    for m in results.metric_names():
        if m in runs.columns and pd.api.types.is_numeric_dtype(runs[m]):
            metrics.append(m)
    for p in params:
        if runs[p].dtype == object:
            runs[p] = runs[p].map(hashable)
    swept = [p for p in params if runs[p].nunique(dropna=False) > 1]
    counts = {str(k): int(v) for k, v in runs["status"].value_counts().items()} if len(runs) else {}

    steps = read_steps(store.layout).to_pandas()
    if len(steps) and len(runs):
        keep = runs[["run_id", "sweep", *swept]]
        steps = steps.merge(keep, on=["run_id", "sweep"], how="inner")
    else:
        steps = pd.DataFrame(columns=["run_id", "name", "step", "value", "sweep", *swept])
    return ReportData(
        root=store.root,
        manifest=store.read_manifest(),
        sweeps=store.read_sweeps(),
        runs=runs,
        params=params,
        swept=swept,
        metrics=metrics,
        steps=steps,
        counts=counts,
    )


def summary(data: ReportData) -> pd.DataFrame:
    """One row per configuration: runs, successes, and mean/std of each metric."""
    import pandas as pd

    runs = data.runs
    keys = data.swept
    if not len(runs):
        return pd.DataFrame()
    df = runs.assign(_ok=(runs["status"] == "success").astype("int64"))
    df = df.assign(_key=0) if not keys else df
    by = keys or ["_key"]
    groups = df.groupby(by, dropna=False, sort=True)
    out = groups.agg(runs=("run_id", "size"), success=("_ok", "sum"))
    ok = df[df["_ok"] == 1]
    if data.metrics and len(ok):
        stats = ok.groupby(by, dropna=False, sort=True)[data.metrics].agg(["mean", "std"])
        stats.columns = [f"{m}_{s}" for m, s in stats.columns]
        out = out.join(stats)
    out = out.reset_index()
    return out.drop(columns=["_key"]) if not keys else out
