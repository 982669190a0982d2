"""Summaries of results across replicates: grouped statistics and their display."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from .results import Results

_KNOWN_STATS = ("mean", "std", "count", "min", "max", "median", "sem", "ci95")


def _ci95(x: pd.Series) -> float:
    """Half-width of a 95% confidence interval of the mean (Student t)."""
    import math

    n = int(x.count())
    if n < 2:
        return float("nan")
    from statistics import NormalDist

    try:
        from scipy.stats import t as student_t  # optional

        q = float(student_t.ppf(0.975, n - 1))
    except ImportError:
        q = _t975(n - 1) if n - 1 <= 30 else NormalDist().inv_cdf(0.975)
    return q * float(x.std(ddof=1)) / math.sqrt(n)


_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def _t975(df: int) -> float:
    return _T975[df - 1]


def summarize(
    results: Results,
    *,
    group_by: Sequence[str] | str | None,
    metrics: Sequence[str] | None,
    stats: Sequence[str],
) -> pd.DataFrame:
    """Statistics of each metric per group of params, over successful runs."""
    df = results.successful.to_pandas()
    if isinstance(group_by, str):
        group_by = [group_by]
    if group_by is None:
        group_by = results.param_names()
    group_by = list(group_by)
    missing = [g for g in group_by if g not in df.columns]
    if missing:
        raise KeyError(f"group_by: no column {missing}; params are {results.param_names()}")
    if metrics is None:
        metrics = [m for m in results.metric_names() if m in df.columns and m not in group_by]
    metrics = list(metrics)
    bad = [s for s in stats if s not in _KNOWN_STATS]
    if bad:
        raise ValueError(f"unknown stats {bad}; choose from {_KNOWN_STATS}")
    aggs: list[Any] = [_ci95 if s == "ci95" else s for s in stats]
    num = df[[*group_by, *metrics]].copy()
    for m in metrics:
        num[m] = num[m].astype("float64")
    keys = group_by or ["__all__"]
    if not group_by:
        num["__all__"] = 0
    out = num.groupby(keys, dropna=False, sort=True)[metrics].agg(aggs)
    out.columns = [f"{m}_{'ci95' if callable(s) else s}" for m, s in out.columns]
    return out.reset_index() if group_by else out.reset_index(drop=True)


def print_summary(summary: pd.DataFrame, title: str = "") -> None:
    """Print a summary frame, as a rich table when rich is installed."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print(summary.to_string(index=False, float_format=lambda x: f"{x:.6g}"))
        return
    table = Table(title=title or None, show_lines=False)
    for c in summary.columns:
        table.add_column(str(c), justify="right")
    for row in summary.itertuples(index=False):
        table.add_row(*[f"{v:.6g}" if isinstance(v, float) else str(v) for v in row])
    Console().print(table)
