"""Report figures drawn with matplotlib and embedded as inline SVG (no files, no network)."""

from __future__ import annotations

import io
import math
import re
from typing import TYPE_CHECKING, Any

from .._text import plot_text
from ..results.analysis import group_stats, interval
from ..store.records import DEFINITION_COLUMNS, STATUS, STEP, STEP_NAME, STEP_VALUE, SUCCESS
from ._data import config_label, fmt_value

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ._data import ReportData

#: At most this many lines in one figure (further configurations are summarized).
MAX_LINES = 8
#: At most this many metric-vs-parameter figures.
MAX_FIGURES = 24

_RC: dict[str, Any] = {
    "svg.fonttype": "none",  # text stays text: smaller, searchable, crisp
    "font.size": 9,
    "font.family": "sans-serif",
    "text.usetex": False,  # names and values are plain text (plot_text escapes mathtext)
}
_COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#db2777"]


def _new_figure(width: float = 4.6, height: float = 3.0) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def to_svg(fig: Figure, uid: str) -> str:
    """The figure as an ``<svg>`` element whose ids are unique within the page."""

    buf = io.StringIO()
    with _rc_context({**_RC, "svg.hashsalt": uid}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    # Prefix every id (and its references) so that several inline SVGs never clash.
    text = re.sub(r'id="([^"]+)"', rf'id="{uid}-\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{uid}-\1)", text)
    text = re.sub(r'((?:xlink:)?href)="#([^"]+)"', rf'\1="#{uid}-\2"', text)
    return text.replace("<svg ", f'<svg role="img" aria-label="{uid}" ', 1)


def _rc_context(rc: dict[str, Any]) -> Any:
    """``matplotlib.rc_context`` (its stubs want literal keys; ours are plain strings)."""
    import matplotlib

    return matplotlib.rc_context(rc)  # type: ignore[arg-type]


def _numeric(series: pd.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series)) and not pd.api.types.is_bool_dtype(series)


def _use_log(values: Any) -> bool:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) >= 100


def _style(ax: Axes) -> None:
    ax.grid(True, alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _line(
    ax: Axes,
    data: pd.DataFrame,
    x: Any,
    color: str,
    label: str | None,
    *,
    categorical: bool = False,
) -> None:
    """The mean of ``data`` (columns mean, lo, hi of :func:`interval`) and its band."""
    import numpy as np

    x = np.asarray(x, dtype=float)
    mean = data["mean"].to_numpy(dtype=float)
    lo, hi = data["lo"].to_numpy(dtype=float), data["hi"].to_numpy(dtype=float)
    if categorical:  # separate categories: points with error bars, no connecting line
        yerr = [mean - lo, hi - mean]
        ax.errorbar(x, mean, yerr=yerr, fmt="o", ms=5, capsize=4, color=color, label=label)
        return
    ax.plot(x, mean, marker="o", ms=3.5, lw=1.6, color=color, label=label)
    if np.any(hi > lo):
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)


def _mean_std(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Mean of ``value`` ± one std per group of ``keys`` (columns keys, mean, lo, hi)."""
    stats = group_stats(frame, keys, [value], ("mean", "std"))
    return interval(stats, mean=f"{value}_mean", spread=f"{value}_std")


def _draw_configs(
    ax: Axes, cfg: pd.DataFrame, ok: pd.DataFrame, metric: str, param: str, others: list[str]
) -> None:
    """The lines (or points) of ``metric`` against ``param``; x positions already numeric."""
    combos = cfg[others].drop_duplicates() if others else None
    per_x = cfg.groupby(param, dropna=False)[param].size()
    categorical = not _numeric(ok[param])
    if cfg[param].nunique() > 20 and int(per_x.max()) <= 2:  # e.g. random search
        # Random search: every configuration is a point; error bars are replicate spread.
        mean = cfg["mean"].to_numpy(dtype=float)
        ax.errorbar(
            cfg["x"].to_numpy(dtype=float),
            mean,
            yerr=[mean - cfg["lo"].to_numpy(dtype=float), cfg["hi"].to_numpy(dtype=float) - mean],
            fmt="o",
            ms=3.5,
            color=_COLORS[0],
            ecolor=_COLORS[0],
            alpha=0.75,
            elinewidth=1,
        )
    elif combos is not None and 1 < len(combos) <= MAX_LINES:
        for i, row in enumerate(combos.itertuples(index=False)):
            part = cfg.merge(combos.iloc[[i]], on=others, how="inner").sort_values(param)
            label = plot_text(config_label(dict(zip(others, row, strict=True))))
            _line(ax, part, part["x"], _COLORS[i % 8], label, categorical=categorical)
        ax.legend(fontsize=7, frameon=False)
    else:
        # One line: mean ± std over replicates (and over the other parameters, if many).
        g = _mean_std(ok, [param], metric)
        g["x"] = _positions(g[param], cfg)
        overall = "mean ± std over all other settings" if others else None
        _line(ax, g, g["x"], _COLORS[0], overall, categorical=categorical)
        if overall:
            ax.legend(fontsize=7, frameon=False)


def _x_values(values: pd.Series) -> list[Any]:
    return sorted(values.dropna().unique().tolist(), key=lambda v: (str(type(v)), v))


def _positions(values: pd.Series, cfg: pd.DataFrame) -> Any:
    """x positions: the values themselves, or the index of each category."""
    if _numeric(values):
        return values
    pos = {v: i for i, v in enumerate(_x_values(cfg[values.name]))}
    return [pos.get(v, math.nan) for v in values]


def metric_vs_param(data: ReportData, metric: str, param: str, ok: pd.DataFrame) -> Figure:
    """``metric`` (mean ± std over replicates) against ``param``; one line per other setting."""
    fig = _new_figure()
    ax = fig.add_subplot()
    _style(ax)
    others = [p for p in data.swept if p != param]
    cfg = _mean_std(ok, data.swept, metric)
    cfg["x"] = _positions(cfg[param], cfg)
    _draw_configs(ax, cfg, ok, metric, param, others)
    xs_all = _x_values(cfg[param])
    if _numeric(ok[param]) and _use_log(xs_all):
        ax.set_xscale("log")
    if not _numeric(ok[param]):
        ax.set_xticks(range(len(xs_all)), [plot_text(fmt_value(v)) for v in xs_all])
        ax.set_xlim(-0.5, len(xs_all) - 0.5)
    ax.set_xlabel(plot_text(param))
    ax.set_ylabel(plot_text(metric))
    ax.set_title(plot_text(f"{metric} vs {param}"), fontsize=10)
    return fig


def metric_plots(data: ReportData) -> list[tuple[str, str]]:
    """(caption, svg) of each metric against each swept parameter."""
    with _rc_context(_RC):
        return _metric_plots(data)


def _metric_plots(data: ReportData) -> list[tuple[str, str]]:
    runs = data.runs
    ok = runs[runs[STATUS] == SUCCESS]
    out: list[tuple[str, str]] = []
    if not len(ok) or not data.swept:
        return out
    for metric in data.metrics:
        if ok[metric].notna().sum() == 0:
            continue
        sub = ok[ok[metric].notna()].copy()
        sub[metric] = sub[metric].astype("float64")
        for param in data.swept:
            if param in DEFINITION_COLUMNS:  # lines per definition, never an axis
                continue
            if len(out) >= MAX_FIGURES:
                return out
            fig = metric_vs_param(data, metric, param, sub)
            uid = f"m{len(out)}"
            out.append((f"{metric} against {param}", to_svg(fig, uid)))
    return out


def learning_curves(data: ReportData) -> list[tuple[str, str, str]]:
    """(caption, svg, note) of each stepped metric: mean ± std over replicates per config."""
    with _rc_context(_RC):
        return _learning_curves(data)


def _curve_groups(s: pd.DataFrame, keys: list[str]) -> tuple[list[tuple[str | None, Any]], str]:
    """(label, steps) of each configuration drawn (at most MAX_LINES), and a note."""
    if not keys:
        return [(None, s)], ""
    note = ""
    configs = s[keys].drop_duplicates().sort_values(keys)
    if len(configs) > MAX_LINES:
        note = f"showing {MAX_LINES} of {len(configs)} configurations"
        configs = configs.iloc[:: math.ceil(len(configs) / MAX_LINES)][:MAX_LINES]
    groups: list[tuple[str | None, Any]] = [
        (
            plot_text(config_label(dict(zip(keys, row, strict=True)))),
            s.merge(configs.iloc[[i]], on=keys, how="inner"),
        )
        for i, row in enumerate(configs.itertuples(index=False))
    ]
    return groups, note


def _learning_curves(data: ReportData) -> list[tuple[str, str, str]]:
    steps = data.steps
    out: list[tuple[str, str, str]] = []
    if not len(steps):
        return out
    keys = data.swept
    for k, name in enumerate(sorted(steps[STEP_NAME].unique())):
        fig = _new_figure(6.0, 3.2)
        ax = fig.add_subplot()
        _style(ax)
        groups, note = _curve_groups(steps[steps[STEP_NAME] == name], keys)
        for i, (label, part) in enumerate(groups):
            g = _mean_std(part, [STEP], STEP_VALUE)
            _line(ax, g, g[STEP], _COLORS[i % 8], label)
        if keys:
            ax.legend(fontsize=7, frameon=False)
        ax.set_xlabel(STEP)
        ax.set_ylabel(plot_text(name))
        ax.set_title(plot_text(f"{name} by step"), fontsize=10)
        out.append((f"{name} by step", to_svg(fig, f"c{k}"), note))
    return out
