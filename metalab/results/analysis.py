"""Summaries of results across replicates: grouped statistics, their display, stepped metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .results import Results

KNOWN_STATS = ("mean", "std", "count", "min", "max", "median", "sem", "ci95")
#: Stats that give the width of an interval around the mean, in order of preference.
_SPREADS = ("ci95", "std", "sem")

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
_T975 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]


def t975(dof: Any) -> np.ndarray:
    """The 97.5% quantile of Student's t for each number of degrees of freedom (NaN if < 1).

    Exact table values up to 30, a Cornish-Fisher expansion above (error < 1e-4).
    """
    import numpy as np

    d = np.asarray(dof, dtype="float64")
    out = np.full(d.shape, np.nan)
    small = (d >= 1) & (d <= 30)
    out[small] = np.take(_T975, d[small].astype(int) - 1)
    big = d > 30
    z = 1.959963984540054
    v = d[big]
    out[big] = (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
    )
    return out


def _group_keys(results: Results, group_by: Sequence[str] | str | None) -> list[str]:
    from ..errors import ResultsError
    from .results import _suggest

    if isinstance(group_by, str):
        group_by = [group_by]
    if group_by is None:
        return results.param_names()
    keys = list(group_by)
    lookup = results._lookup()
    for g in keys:
        if g not in lookup:
            raise ResultsError(f"group_by: no column {g!r}; {_suggest(g, results.param_names())}")
    return keys


def summarize(
    results: Results,
    *,
    group_by: Sequence[str] | str | None,
    metrics: Sequence[str] | None,
    stats: Sequence[str],
) -> pd.DataFrame:
    """Statistics of each metric per group, over the successful runs (see ``Results.summary``)."""
    import numpy as np
    import pandas as pd

    from ..errors import ResultsError
    from .results import _suggest

    if isinstance(stats, str):
        stats = (stats,)
    stats = list(stats)
    bad = [s for s in stats if s not in KNOWN_STATS]
    if bad or not stats:
        raise ResultsError(
            f"unknown stats {bad}; choose from {list(KNOWN_STATS)}, e.g. stats=('mean', 'ci95')"
        )
    if isinstance(metrics, str):
        metrics = [metrics]
    whole = results._derive(columns=None) if results._columns is not None else results
    succ = whole.filter(status="success")
    keys = _group_keys(succ if group_by is None else whole, group_by)
    if metrics is None:
        metrics = [m for m in results.metric_names() if m not in keys]
    lookup = whole._lookup()
    for m in metrics:
        if m not in lookup:
            raise ResultsError(f"metrics: no metric {m!r}; {_suggest(m, whole.metric_names())}")
    metrics = list(metrics)
    table = succ._arrow()
    raw = [lookup[c] for c in [*keys, *metrics]]
    df = table.select(list(dict.fromkeys(raw))).to_pandas()
    df.columns = [succ._names.get(c, c) for c in df.columns]
    for m in metrics:
        try:
            df[m] = pd.to_numeric(df[m], errors="raise").astype("float64")
        except (ValueError, TypeError) as exc:
            raise ResultsError(
                f"metric {m!r} is not numeric, so it has no statistics; "
                f"group by it instead (group_by=[..., {m!r}])"
            ) from exc
    if df.empty or not metrics:
        cols = [*keys, *[f"{m}_{s}" for m in metrics for s in stats]]
        out = pd.DataFrame({c: pd.Series([], dtype="float64") for c in cols})
        out.attrs["metalab"] = {"group_by": keys, "metrics": metrics, "stats": stats}
        return out
    base = [s for s in ("mean", "std", "count", "min", "max", "median") if s in stats]
    if {"sem", "ci95"} & set(stats):
        base = list(dict.fromkeys([*base, "mean", "std", "count"]))
    if keys:
        grouped = df.groupby(keys, dropna=False, sort=True)[metrics]
        agg = grouped.agg(base) if metrics else grouped.size().to_frame("n")
    else:
        agg = df[metrics].agg(base).unstack().to_frame().T
    out = pd.DataFrame(index=agg.index)
    for m in metrics:
        for s in stats:
            if s == "sem":
                col = agg[(m, "std")] / np.sqrt(agg[(m, "count")])
            elif s == "ci95":
                n = agg[(m, "count")].to_numpy(dtype="float64")
                col = t975(n - 1) * agg[(m, "std")].to_numpy(dtype="float64") / np.sqrt(n)
            else:
                col = agg[(m, s)]
            out[f"{m}_{s}"] = col.astype("int64") if s == "count" else col
    out = out.reset_index() if keys else out.reset_index(drop=True)
    out.attrs["metalab"] = {"group_by": keys, "metrics": metrics, "stats": stats}
    return out


# ------------------------------------------------------------------------------ display
def fmt_pm(mean: float, spread: float | None) -> str:
    """``mean ± spread`` with the spread to two significant digits and the mean to match."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    if spread is None or not math.isfinite(spread) or spread <= 0:
        return f"{mean:.6g}"
    if abs(mean) >= 1e6 or spread < 1e-6:
        return f"{mean:.4g} ± {spread:.2g}"
    digits = min(8, max(0, 1 - math.floor(math.log10(spread))))
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def summary_cells(
    summary: pd.DataFrame, stats: Sequence[str]
) -> tuple[list[str], dict[str, list[tuple[str, list[str]]]]]:
    """The group columns, and per metric its display columns as (header, cells)."""
    info = summary.attrs.get("metalab") or {}
    keys = list(info.get("group_by", []))
    metrics = list(info.get("metrics", []))
    stats = list(stats)
    spread = next((s for s in _SPREADS if s in stats), None)
    compact = "mean" in stats
    out: dict[str, list[tuple[str, list[str]]]] = {}
    for m in metrics:
        cols: list[tuple[str, list[str]]] = []
        rest = list(stats)
        if compact:
            head = "mean" + (f" ± {spread}" if spread else "")
            head += " (n)" if "count" in stats else ""
            means = summary[f"{m}_mean"].tolist()
            spreads = summary[f"{m}_{spread}"].tolist() if spread else [None] * len(means)
            counts = summary[f"{m}_count"].tolist() if "count" in stats else None
            cells = [fmt_pm(a, b) for a, b in zip(means, spreads, strict=True)]
            if counts is not None:
                cells = [f"{c} ({n})" for c, n in zip(cells, counts, strict=True)]
            cols.append((head, cells))
            rest = [s for s in stats if s not in ("mean", spread, "count")]
        for s in rest:
            cols.append((s, [_fmt(v) for v in summary[f"{m}_{s}"].tolist()]))
        out[m] = cols
    return keys, out


def print_summary(summary: pd.DataFrame, *, stats: Sequence[str], title: str = "") -> None:
    """Print a summary: one row per group; one table per metric when too wide."""
    if summary.empty:
        print(f"{title}: no successful runs to summarise" if title else "no successful runs")
        return
    keys, per_metric = summary_cells(summary, stats)
    key_cells = [[_fmt(v) for v in summary[k].tolist()] for k in keys]
    n_rows = len(summary)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        _print_plain(title, keys, key_cells, per_metric, n_rows)
        return
    console = Console()

    def width(header: str, cells: list[str]) -> int:
        return max([len(x) for x in header.split("\n")] + [len(c) for c in cells]) + 3

    def make(metrics: list[str], caption_title: str) -> Table:
        table = Table(title=caption_title or None, show_lines=False, title_justify="left")
        for k in keys:
            table.add_column(k, justify="right", no_wrap=True)
        cells_all = []
        for m in metrics:
            for head, cells in per_metric[m]:
                label = f"{m}\n{head}"
                table.add_column(label, justify="right", no_wrap=True)
                cells_all.append(cells)
        for i in range(n_rows):
            table.add_row(*[kc[i] for kc in key_cells], *[c[i] for c in cells_all])
        return table

    total = sum(width(k, kc) for k, kc in zip(keys, key_cells, strict=True)) + sum(
        width(f"{m}", cells) + len(m) for m, cols in per_metric.items() for _h, cells in cols
    )
    metrics = list(per_metric)
    if total <= console.width or len(metrics) <= 1:
        console.print(make(metrics, title))
    else:
        for m in metrics:
            console.print(make([m], title))


def _print_plain(
    title: str,
    keys: list[str],
    key_cells: list[list[str]],
    per_metric: dict[str, list[tuple[str, list[str]]]],
    n_rows: int,
) -> None:
    headers = list(keys)
    columns = list(key_cells)
    for m, cols in per_metric.items():
        for head, cells in cols:
            headers.append(f"{m} {head}")
            columns.append(cells)
    widths = [
        max([len(h)] + [len(c) for c in col]) for h, col in zip(headers, columns, strict=True)
    ]
    if title:
        print(title)
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    for i in range(n_rows):
        print("  ".join(col[i].rjust(w) for col, w in zip(columns, widths, strict=True)))


# ------------------------------------------------------------------------ stepped metrics
def stepped(results: Results, metric: str | None) -> pd.DataFrame:
    """Long table of stepped metrics for the selected runs (see ``Results.series``)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from ..store import read_steps

    whole = results._derive(columns=None) if results._columns is not None else results
    table = whole._arrow()
    names = whole._names
    params = [
        c
        for c in table.column_names
        if c.startswith("params.") and table.column(c).null_count < table.num_rows
    ]
    keep = [
        "run_id",
        "sweep",
        *(["experiment"] if "experiment" in table.column_names else []),
        *params,
        "replicate",
    ]
    runs = table.select(keep)
    parts = []
    for store, label in whole._pairs():
        mine = runs if label is None else runs.filter(pc.equal(runs.column("experiment"), label))
        if mine.num_rows == 0:
            continue
        expr = ds.field("run_id").isin(mine.column("run_id").combine_chunks())
        if metric is not None:
            expr = expr & (ds.field("name") == metric)
        steps = read_steps(store.layout, filter=expr)
        if steps.num_rows == 0:
            continue
        # Only the steps of each run's current record (the attempt its record comes from).
        joined = steps.join(mine, keys=["run_id", "sweep"], join_type="inner")
        parts.append(joined)
    cols = ["run_id", *([c for c in keep if c not in ("run_id", "sweep")]), "name", "step", "value"]
    if not parts:
        import pandas as pd

        empty = {
            names.get(c, c): pd.Series([], dtype="float64" if c == "value" else "object")
            for c in cols
        }
        return pd.DataFrame(empty)
    out = pa.concat_tables(parts, promote_options="permissive").select(cols)
    df = out.to_pandas()
    df.columns = [names.get(c, c) for c in cols]
    df = df.drop_duplicates(subset=["run_id", "name", "step"], keep="last")
    order = [
        c
        for c in ("experiment", *[names.get(p, p) for p in params], "replicate", "name", "step")
        if c in df.columns
    ]
    return df.sort_values(order, kind="stable").reset_index(drop=True)
