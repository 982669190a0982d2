"""Plots of results with matplotlib (the optional ``plot`` extra).

Every plot draws the mean across replicates, one line per ``hue`` value (in sorted
order, so ``ax.lines[i]`` is the ``i``-th group), with a band or error bars, and
returns the matplotlib ``Axes``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .._text import plot_text

if TYPE_CHECKING:
    import pandas as pd

    from .results import Results

BANDS = ("ci95", "std", "sem")


def pyplot() -> Any:
    """``matplotlib.pyplot``, or an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError('plotting results needs matplotlib: pip install "metalab[plot]"') from exc
    return plt


def _check_band(band: str | None) -> None:
    from ..errors import ResultsError

    if band is not None and band not in BANDS:
        raise ResultsError(f"band={band!r} is not one of {[*BANDS, None]}; e.g. band='ci95'")


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    _fig, ax = pyplot().subplots(figsize=(6.4, 4.2), layout="constrained")
    return ax


def _numeric(values: pd.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(values)) and not pd.api.types.is_bool_dtype(values)


def _draw(
    ax: Any,
    data: pd.DataFrame,
    *,
    x: str,
    hue: str | None,
    band: str | None,
    errorbars: bool,
    marker: str | None,
) -> None:
    """One line per hue group from columns x, mean, lo, hi."""
    import numpy as np

    groups = [(None, data)] if hue is None else list(data.groupby(hue, dropna=False, sort=True))
    categorical = not _numeric(data[x])
    cats = list(dict.fromkeys(data[x].tolist())) if categorical else []
    for key, g in groups:
        g = g.sort_values(x) if not categorical else g
        xs = np.array([cats.index(v) for v in g[x]]) if categorical else g[x].to_numpy(float)
        mean = g["mean"].to_numpy(float)
        label = None if hue is None else f"{hue}={key[0] if isinstance(key, tuple) else key}"
        label = None if label is None else plot_text(label)  # no mathtext from names
        (line,) = ax.plot(xs, mean, marker=marker, label=label)
        if band is not None:
            lo, hi = g["lo"].to_numpy(float), g["hi"].to_numpy(float)
            if errorbars:
                ax.errorbar(
                    xs,
                    mean,
                    yerr=[mean - lo, hi - mean],
                    fmt="none",
                    ecolor=line.get_color(),
                    capsize=0,
                    elinewidth=1.2,
                )
            else:
                ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    if categorical:
        ax.set_xticks(range(len(cats)), [plot_text(c) for c in cats])
    if hue is not None:
        ax.legend(title=None, frameon=False)


def _band_label(band: str | None, n_text: str) -> str:
    if band is None:
        return ""
    name = {"ci95": "95% CI", "std": "± 1 std", "sem": "± 1 s.e.m."}[band]
    return f" ({name}{n_text})"


def _finish(ax: Any, *, logx: bool, logy: bool, path: str | os.PathLike[str] | None) -> Any:
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    if path is not None:
        ax.figure.savefig(os.fspath(path), dpi=150, bbox_inches="tight")
    return ax


def _with_band(df: pd.DataFrame, band: str | None, mean: str, spread: str | None) -> pd.DataFrame:
    out = df.rename(columns={mean: "mean"})
    if band is not None and spread is not None:
        s = out[spread].fillna(0.0)
        out["lo"], out["hi"] = out["mean"] - s, out["mean"] + s
    return out


def plot_metric(
    results: Results,
    *,
    x: str,
    y: str,
    hue: str | None,
    logx: bool,
    logy: bool,
    band: str | None,
    errorbars: bool,
    ax: Any,
    path: str | os.PathLike[str] | None,
) -> Any:
    """Mean of metric ``y`` against ``x`` across replicates (see ``Results.plot``)."""
    _check_band(band)
    plt_ax = _axes(ax)
    keys = [hue, x] if hue is not None else [x]
    stats = ("mean", "count", band) if band is not None else ("mean", "count")
    summary = results.summary(group_by=keys, metrics=[y], stats=stats)
    data = _with_band(summary, band, f"{y}_mean", f"{y}_{band}" if band else None)
    _draw(plt_ax, data, x=x, hue=hue, band=band, errorbars=errorbars, marker="o")
    counts = sorted(set(summary[f"{y}_count"].tolist()))
    n_text = (
        ""
        if not counts
        else (f", n={counts[0]}" if len(counts) == 1 else f", n={counts[0]}-{counts[-1]}")
    )
    plt_ax.set_xlabel(plot_text(x))
    plt_ax.set_ylabel(plot_text(f"{y}{_band_label(band, n_text)}"))
    return _finish(plt_ax, logx=logx, logy=logy, path=path)


def plot_steps(
    results: Results,
    metric: str,
    *,
    hue: str | None,
    logx: bool,
    logy: bool,
    band: str | None,
    ax: Any,
    path: str | os.PathLike[str] | None,
) -> Any:
    """Mean of a stepped metric per step across runs (see ``Results.plot_series``)."""
    import numpy as np

    from ..errors import ResultsError
    from .analysis import t975
    from .results import _suggest

    _check_band(band)
    succ = results.filter(status="success")
    series = succ.series(metric)
    if series.empty:
        have = sorted(set(succ.series()["name"].tolist()))
        raise ResultsError(
            f"plot_series: no stepped metric {metric!r} in these runs; "
            + (
                _suggest(metric, have)
                if have
                else "record one with capture.metric(name, value, step=i)"
            )
        )
    if hue is not None and hue not in series.columns:
        raise ResultsError(
            f"plot_series(hue={hue!r}): no param {hue!r}; "
            + _suggest(
                hue, [c for c in series.columns if c not in ("run_id", "name", "step", "value")]
            )
        )
    keys = [hue, "step"] if hue is not None else ["step"]
    agg = series.groupby(keys, dropna=False, sort=True)["value"].agg(["mean", "std", "count"])
    agg = agg.reset_index()
    n = agg["count"].to_numpy(float)
    std = agg["std"].to_numpy(float)
    spread = {"std": std, "sem": std / np.sqrt(n), "ci95": t975(n - 1) * std / np.sqrt(n)}
    if band is not None:
        agg["spread"] = spread[band]
    data = _with_band(agg, band, "mean", "spread" if band is not None else None)
    plt_ax = _axes(ax)
    _draw(plt_ax, data, x="step", hue=hue, band=band, errorbars=False, marker=None)
    per_line = (
        sorted(set(series.groupby(hue, dropna=False)["run_id"].nunique().tolist()))
        if hue is not None
        else [series["run_id"].nunique()]
    )
    runs = str(per_line[0]) if len(per_line) == 1 else f"{per_line[0]}-{per_line[-1]}"
    plt_ax.set_xlabel("step")
    plt_ax.set_ylabel(plot_text(f"{metric}{_band_label(band, '')}"))
    plt_ax.set_title(
        plot_text(f"{metric}: mean of {runs} runs" + (" per line" if hue else "")),
        fontsize="medium",
    )
    return _finish(plt_ax, logx=logx, logy=logy, path=path)
