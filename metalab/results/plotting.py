"""Plots of results with matplotlib (the optional ``plot`` extra).

Every plot draws the mean across replicates, one line per ``hue`` value (in sorted
order, so ``ax.lines[i]`` is the ``i``-th group), with a band or error bars, and
returns the matplotlib ``Axes``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._text import fmt_short, plot_text
from ..errors import ResultsError
from ..store.records import RUN_ID, STEP, STEP_NAME, STEP_VALUE
from .analysis import group_stats, interval
from .naming import suggest

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = [
    "BANDS",
    "check_band",
    "no_stepped_metric",
    "plot_labels",
    "plot_metric",
    "plot_steps",
    "pyplot",
]

#: The bands a plot can draw around the mean (stats of ``group_stats``).
BANDS = ("ci95", "std", "sem")


def pyplot() -> Any:
    """``matplotlib.pyplot``, or an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError('plotting results needs matplotlib: pip install "metalab[plot]"') from exc
    return plt


def check_band(band: str | None) -> None:
    """Raise a ResultsError unless ``band`` is one of :data:`BANDS` or None."""
    if band is not None and band not in BANDS:
        raise ResultsError(f"band={band!r} is not one of {[*BANDS, None]}; e.g. band='ci95'")


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    _fig, new = pyplot().subplots(figsize=(6.4, 4.2), layout="constrained")
    return new  # type: ignore[no-any-return]


def _numeric(values: pd.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(values)) and not pd.api.types.is_bool_dtype(values)


def _draw(
    ax: Axes,
    data: pd.DataFrame,
    *,
    x: str,
    hue: str | None,
    band: str | None,
    errorbars: bool,
    marker: str | None,
    name: str | None = None,
) -> None:
    """One line per hue group from columns x, mean, lo, hi, labelled ``name, hue=value``."""
    import numpy as np

    groups = [(None, data)] if hue is None else list(data.groupby(hue, dropna=False, sort=True))
    categorical = not _numeric(data[x])
    cats = list(dict.fromkeys(data[x].tolist())) if categorical else []
    for key, g in groups:
        g = g.sort_values(x) if not categorical else g
        xs = np.array([cats.index(v) for v in g[x]]) if categorical else g[x].to_numpy(float)
        mean = g["mean"].to_numpy(float)
        parts = [name] if name else []
        if hue is not None:
            parts.append(f"{hue}={fmt_short(key[0] if isinstance(key, tuple) else key)}")
        label = plot_text(", ".join(parts)) if parts else None  # no mathtext from names
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
    labelled = [h for h in ax.get_lines() if not str(h.get_label()).startswith("_")]
    if labelled:  # every labelled line on these axes, earlier calls' included
        ax.legend(title=None, frameon=False)


def _band_label(band: str | None, n_text: str) -> str:
    if band is None:
        return ""
    name = {"ci95": "95% CI", "std": "± 1 std", "sem": "± 1 s.e.m."}[band]
    return f" ({name}{n_text})"


def _finish(ax: Axes, *, logx: bool, logy: bool, path: str | os.PathLike[str] | None) -> Axes:
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    if path is not None:
        figure: Any = ax.figure  # typed Figure | SubFigure; savefig is on Figure
        figure.savefig(os.fspath(path), dpi=150, bbox_inches="tight")
    return ax


def _n_text(counts: list[int]) -> str:
    if not counts:
        return ""
    return f", n={counts[0]}" if len(counts) == 1 else f", n={counts[0]}-{counts[-1]}"


def plot_metric(
    summary: pd.DataFrame,
    *,
    x: str,
    y: Sequence[str],
    labels: Sequence[str | None],
    hue: str | None,
    logx: bool,
    logy: bool,
    band: str | None,
    errorbars: bool,
    ax: Axes | None,
    path: str | os.PathLike[str] | None,
) -> Axes:
    """Draw each ``y``'s mean against ``x`` from a summary by ``[hue,] x`` (``Results.plot``).

    ``summary`` has the columns ``{y}_mean``, ``{y}_count`` and ``{y}_{band}`` of each
    ``y``; ``labels`` name each ``y``'s lines in the legend (None: no name).
    """
    check_band(band)
    plt_ax = _axes(ax)
    counts: set[int] = set()
    for metric, name in zip(y, labels, strict=True):
        spread = f"{metric}_{band}" if band else None
        data = interval(summary, mean=f"{metric}_mean", spread=spread)
        _draw(plt_ax, data, x=x, hue=hue, band=band, errorbars=errorbars, marker="o", name=name)
        counts |= set(summary[f"{metric}_count"].tolist())
    n_text = _n_text(sorted(counts))
    plt_ax.set_xlabel(plot_text(x))
    plt_ax.set_ylabel(plot_text(f"{', '.join(y)}{_band_label(band, n_text)}"))
    return _finish(plt_ax, logx=logx, logy=logy, path=path)


def plot_labels(y: Sequence[str], label: str | Sequence[str] | None) -> list[str | None]:
    """The legend name of each metric of ``plot(y=..., label=...)``.

    One metric: ``label`` (None: no name, the hue values alone).  Several: ``label`` is
    a list of one name each, or None for the metric names.
    """
    if label is None:
        return [None] if len(y) == 1 else list(y)
    names = [label] if isinstance(label, str) else list(label)
    if len(names) != len(y):
        raise ResultsError(
            f"plot(label={label!r}) needs one name per metric of y={list(y)}, "
            f"e.g. label={[f'{m} label' for m in y]!r}"
        )
    return [str(n) for n in names]


def no_stepped_metric(metric: str, have: Sequence[str]) -> ResultsError:
    """The error of ``plot_series`` for a metric no selected run recorded with steps."""
    hint = suggest(metric, have) if have else "record one with capture.metric(name, value, step=i)"
    return ResultsError(f"plot_series: no stepped metric {metric!r} in these runs; {hint}")


def plot_steps(
    series: pd.DataFrame,
    metric: str,
    *,
    hue: str | None,
    logx: bool,
    logy: bool,
    band: str | None,
    ax: Axes | None,
    path: str | os.PathLike[str] | None,
) -> Axes:
    """Draw a stepped metric's mean per step across runs (``Results.plot_series``).

    ``series`` is the long table of ``Results.series(metric)`` of the successful runs.
    """
    check_band(band)
    if hue is not None and hue not in series.columns:
        others = [c for c in series.columns if c not in (RUN_ID, STEP_NAME, STEP, STEP_VALUE)]
        raise ResultsError(f"plot_series(hue={hue!r}): no param {hue!r}; " + suggest(hue, others))
    keys = [hue, STEP] if hue is not None else [STEP]
    stats = ("mean", "count", band) if band is not None else ("mean", "count")
    agg = group_stats(series, keys, [STEP_VALUE], stats)
    data = interval(agg, mean=f"{STEP_VALUE}_mean", spread=f"{STEP_VALUE}_{band}" if band else None)
    plt_ax = _axes(ax)
    _draw(plt_ax, data, x=STEP, hue=hue, band=band, errorbars=False, marker=None)
    per_line = (
        sorted(set(series.groupby(hue, dropna=False)[RUN_ID].nunique().tolist()))
        if hue is not None
        else [series[RUN_ID].nunique()]
    )
    runs = str(per_line[0]) if len(per_line) == 1 else f"{per_line[0]}-{per_line[-1]}"
    plt_ax.set_xlabel(STEP)
    plt_ax.set_ylabel(plot_text(f"{metric}{_band_label(band, '')}"))
    plt_ax.set_title(
        plot_text(f"{metric}: mean of {runs} runs" + (" per line" if hue else "")),
        fontsize="medium",
    )
    return _finish(plt_ax, logx=logx, logy=logy, path=path)
