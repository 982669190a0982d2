"""A search's results: one row per configuration, the best one, the history plot.

Plain functions of the records (an Arrow table with raw column names) and of the
search's description in the manifest; :class:`~metalab.Results` calls them.
"""

from __future__ import annotations

import json
import math
import statistics
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import ResultsError
from ..store.records import METRIC_PREFIX, PRUNED, SUCCESS, TRIAL

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

COMPLETE, FAILED = "complete", "failed"


def search_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    """The ``params`` description of a search's manifest, or an error naming the fix."""
    spec = manifest.get("params") or {}
    if spec.get("kind") != "optimize":
        raise ResultsError(
            "best(), trials() and plot_history() describe a search; these runs come from "
            f"a {spec.get('kind', 'fixed')!r} parameter source, not metalab.optimize(...)"
        )
    return dict(spec)


def _trial_rows(table: pa.Table, spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    col = METRIC_PREFIX + spec["metric"]
    n = table.num_rows
    get = {
        c: table.column(c).to_pylist() if c in table.column_names else [None] * n
        for c in ("run_id", "status", "params", TRIAL, col)
    }
    rows: dict[str, dict[str, Any]] = {}
    for i in range(n):
        row = rows.setdefault(
            str(get["params"][i]), {"trial": None, "runs": [], "values": [], "statuses": []}
        )
        t = get[TRIAL][i]
        if t is not None and (row["trial"] is None or t < row["trial"]):
            row["trial"] = int(t)
        row["runs"].append(get["run_id"][i])
        row["statuses"].append(get["status"][i])
        v = get[col][i]
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            row["values"].append(float(v))
    return rows


def trials(table: pa.Table, spec: dict[str, Any]) -> pd.DataFrame:
    """One row per configuration: trial, params, aggregated value, status, runs."""
    import pandas as pd

    agg = statistics.median if spec.get("aggregate") == "median" else statistics.fmean
    out = []
    for params, row in _trial_rows(table, spec).items():
        st = row["statuses"]
        status = PRUNED if PRUNED in st else COMPLETE if all(s == SUCCESS for s in st) else FAILED
        out.append(
            {
                "trial": row["trial"],
                **json.loads(params),
                spec["metric"]: agg(row["values"]) if row["values"] else math.nan,
                "status": status,
                "n_runs": len(row["runs"]),
                "run_ids": sorted(row["runs"]),
            }
        )
    df = pd.DataFrame(out)
    if len(df):
        df = df.sort_values("trial", na_position="last", kind="stable", ignore_index=True)
    return df


def best(df: pd.DataFrame, spec: dict[str, Any], *, include_pruned: bool) -> dict[str, Any]:
    """The best row of :func:`trials` (complete ones, and pruned ones if asked)."""
    metric = spec["metric"]
    ok = [COMPLETE, PRUNED] if include_pruned else [COMPLETE]
    cand = df[df["status"].isin(ok) & df[metric].notna()] if len(df) else df
    if not len(cand):
        raise ResultsError(
            f"no completed trial with a value of {metric!r} yet"
            + ("" if include_pruned else "; best(include_pruned=True) also considers pruned ones")
        )
    pos = cand[metric].idxmin() if spec["direction"] == "minimize" else cand[metric].idxmax()
    row = cand.loc[pos]
    skip = {"trial", metric, "status", "n_runs", "run_ids"}
    params = {
        k: v.item() if hasattr(v, "item") else v
        for k, v in row.items()
        if k not in skip and not _missing(v)
    }
    return {
        "trial": int(row["trial"]),
        "params": params,
        "metric": metric,
        "value": float(row[metric]),
        "status": row["status"],
        "run_ids": list(row["run_ids"]),
    }


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def best_so_far(values: list[float], direction: str) -> list[float]:
    """The running best of ``values`` (NaN entries keep the previous best)."""
    out, cur = [], math.nan
    for v in values:
        if not math.isnan(v) and (
            math.isnan(cur) or (v < cur if direction == "minimize" else v > cur)
        ):
            cur = v
        out.append(cur)
    return out


def plot_history(df: pd.DataFrame, spec: dict[str, Any], ax: Axes | None = None) -> Axes:
    """Optimisation history: each trial's value and the best so far against trial."""
    import matplotlib.pyplot as plt

    metric = spec["metric"]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    done = df[df["status"] == COMPLETE] if len(df) else df
    ax.scatter(done["trial"], done[metric], s=12, alpha=0.6, label=metric)
    ax.step(
        done["trial"],
        best_so_far(done[metric].tolist(), spec["direction"]),
        where="post",
        color="C1",
        label="best so far",
    )
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.legend()
    return ax


def plot_params(df: pd.DataFrame, spec: dict[str, Any], fig: Any = None) -> Any:
    """One panel per searched parameter: the objective of each complete trial against it.

    ``fig``: a matplotlib Figure to draw on (the report's); default a new pyplot figure.
    """
    metric = spec["metric"]
    names = [k for k in spec.get("space", {}) if k in df.columns]
    if not names:
        raise ResultsError("no searched parameter in these trials to plot")
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(3.2 * len(names), 3))
    axes = fig.subplots(1, len(names), squeeze=False)
    done = df[df["status"] == COMPLETE] if len(df) else df
    for ax, name in zip(axes[0], names, strict=True):
        ax.scatter(
            done[name].astype(str) if done[name].dtype == object else done[name],
            done[metric],
            s=12,
            alpha=0.7,
        )
        if "LogUniform" in str(spec["space"][name]):
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    return fig


def show_line(results: Any, manifest: dict[str, Any]) -> str | None:
    """``search: 63 of 100 trials, best val_loss 0.123`` for ``metalab show`` (or None).

    ``results`` is the store's :class:`~metalab.Results`.
    """
    spec = manifest.get("params") or {}
    if spec.get("kind") != "optimize":
        return None
    df = results.trials()
    n = int(df["trial"].notna().sum()) if len(df) else 0
    text = f"search: {n} of {spec['n']} trials"
    try:
        b = best(df, spec, include_pruned=False)
    except ResultsError:
        return text
    return f"{text}, best {spec['metric']} {b['value']:.6g}"
