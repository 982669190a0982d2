"""Statistics of results across replicates: grouped statistics and their display."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._text import MISSING, fmt_cell
from ..errors import ResultsError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "KNOWN_STATS",
    "check_stats",
    "fmt_pm",
    "group_stats",
    "interval",
    "print_summary",
    "summarize",
    "summary_cells",
    "t975",
    "with_reductions",
]

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


def check_stats(stats: Sequence[str] | str) -> list[str]:
    """``stats`` as a list, or a ResultsError naming the unknown ones."""
    stats = [stats] if isinstance(stats, str) else list(stats)
    bad = [s for s in stats if s not in KNOWN_STATS]
    if bad or not stats:
        raise ResultsError(
            f"unknown stats {bad}; choose from {list(KNOWN_STATS)}, e.g. stats=('mean', 'ci95')"
        )
    return stats


def group_stats(
    frame: pd.DataFrame, keys: Sequence[str], values: Sequence[str], stats: Sequence[str]
) -> pd.DataFrame:
    """Statistics of ``values`` per group of ``keys``: the one place they are computed.

    One row per group (sorted; a missing key value is a group of its own), the ``keys``
    columns then ``<value>_<stat>`` for each value and stat of :data:`KNOWN_STATS`.
    ``std`` has one degree of freedom removed; ``sem`` is ``std / sqrt(count)``; ``ci95``
    is the half-width of the 95% confidence interval of the mean (Student t).  No keys:
    one row over everything.  Used by ``Results.summary``, ``Results.plot``,
    ``Results.plot_series`` and the HTML report.
    """
    import numpy as np
    import pandas as pd

    keys, values, stats = list(keys), list(values), list(stats)
    if frame.empty or not values:
        cols = [*keys, *[f"{v}_{s}" for v in values for s in stats]]
        return pd.DataFrame({c: pd.Series([], dtype="float64") for c in cols})
    base = [s for s in ("mean", "std", "count", "min", "max", "median") if s in stats]
    if {"sem", "ci95"} & set(stats):
        base = list(dict.fromkeys([*base, "mean", "std", "count"]))
    if keys:
        agg = frame.groupby(keys, dropna=False, sort=True)[values].agg(base)
    else:
        agg = frame[values].agg(base).unstack().to_frame().T
    out = pd.DataFrame(index=agg.index)
    for v in values:
        for s in stats:
            if s == "sem":
                col = agg[(v, "std")] / np.sqrt(agg[(v, "count")])
            elif s == "ci95":
                n = agg[(v, "count")].to_numpy(dtype="float64")
                col = t975(n - 1) * agg[(v, "std")].to_numpy(dtype="float64") / np.sqrt(n)
            else:
                col = agg[(v, s)]
            out[f"{v}_{s}"] = col.astype("int64") if s == "count" else col
    return out.reset_index() if keys else out.reset_index(drop=True)


def with_reductions(
    frame: pd.DataFrame,
    wanted: Sequence[tuple[str, str]],
    stepped: Mapping[str, str],
    reduced: Callable[[list[str], str], pd.DataFrame],
    run_ids: Sequence[str],
) -> tuple[pd.DataFrame, list[str]]:
    """Stepped metrics shown as one number, under a name that says which: ``loss[last]``.

    ``wanted`` lists (metric table name, how) pairs; a metric in ``stepped`` (table name
    -> step name) gets the column ``name[how]`` in place of its own (``last`` is the
    record's value; ``min``/``max``/``mean`` come from ``reduced(step names, how)``, a
    frame indexed by run id, and a run without steps keeps its scalar), any other keeps
    its column.  Returns the frame and the column name of each wanted metric.
    """
    import pandas as pd

    out = frame.copy()
    cols: list[str] = []
    pending: dict[str, list[str]] = {}
    for m, how in wanted:
        if m in stepped and how != "last":
            pending.setdefault(how, []).append(m)
    values: dict[tuple[str, str], pd.Series] = {}
    index = pd.Index(list(run_ids))
    for how, ms in pending.items():
        table = reduced([stepped[m] for m in ms], how)
        for m in ms:
            got = table[stepped[m]] if stepped[m] in table.columns else pd.Series(dtype=float)
            series = got.reindex(index).to_numpy(dtype="float64")
            values[(m, how)] = pd.Series(series, index=out.index).fillna(out[m])
    for m, how in wanted:
        if m not in stepped:
            cols.append(m)
            continue
        name = f"{m}[{how}]"
        new = values[(m, how)] if how != "last" else out[m]
        at = out.columns.get_loc(m) if m in out.columns else len(out.columns)
        if name not in out.columns:
            out.insert(int(at), name, new)
        cols.append(name)
    dropped = [m for m, _ in wanted if m in stepped and m in out.columns]
    return out.drop(columns=list(dict.fromkeys(dropped))), cols


def summarize(
    frame: pd.DataFrame, *, keys: Sequence[str], metrics: Sequence[str], stats: Sequence[str]
) -> pd.DataFrame:
    """The ``Results.summary`` of the successful runs in ``frame`` (table names).

    The result carries ``attrs["metalab"] = {"group_by", "metrics", "stats", "runs"}``
    (``runs``: how many runs were summarised) for :func:`print_summary`.
    """
    import pandas as pd

    frame = frame.copy()
    for m in metrics:
        try:
            frame[m] = pd.to_numeric(frame[m], errors="raise").astype("float64")
        except (ValueError, TypeError) as exc:
            raise ResultsError(
                f"metric {m!r} is not numeric, so it has no statistics; "
                f"group by it instead (group_by=[..., {m!r}])"
            ) from exc
    out = group_stats(frame, keys, metrics, stats)
    out.attrs["metalab"] = {
        "group_by": list(keys),
        "metrics": list(metrics),
        "stats": list(stats),
        "runs": len(frame),
    }
    return out


def interval(frame: pd.DataFrame, *, mean: str, spread: str | None) -> pd.DataFrame:
    """``frame`` with a ``mean`` column and, given a spread column, ``lo``/``hi`` around it.

    The plot data of ``Results.plot``, ``Results.plot_series`` and the report's figures.
    """
    out = frame.rename(columns={mean: "mean"})
    if spread is not None:
        s = out[spread].fillna(0.0)
        out["lo"], out["hi"] = out["mean"] - s, out["mean"] + s
    return out


# ------------------------------------------------------------------------------ display
def fmt_pm(mean: float, spread: float | None) -> str:
    """``mean ± spread`` with the spread to two significant digits and the mean to match."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return MISSING
    if spread is None or not math.isfinite(spread) or spread <= 0:
        return f"{mean:.6g}"
    if abs(mean) >= 1e6 or spread < 1e-6:
        return f"{mean:.4g} ± {spread:.2g}"
    digits = min(8, max(0, 1 - math.floor(math.log10(spread))))
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def _fmt(v: Any) -> str:
    return fmt_cell(v)


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
    """Print a summary: one row per group; one table per metric when too wide.

    A last line counts the runs left out (``attrs["metalab"]["left_out"]``, by status).
    """
    info = summary.attrs.get("metalab") or {}
    note = _left_out_note(info.get("left_out") or {})
    if summary.empty or not info.get("metrics"):
        print(_empty_text(info, title) + (f"; {note}" if note else ""))
        return
    _print_table(summary, stats=stats, title=title)
    if note:
        print(note)


def _left_out_note(left: dict[str, int]) -> str:
    if not left:
        return ""
    parts = ", ".join(f"{n} {status}" for status, n in left.items())
    n = sum(left.values())
    return f"left out: {parts} run{'s' if n != 1 else ''} (see result.failed)"


def _empty_text(info: dict[str, Any], title: str) -> str:
    runs = int(info.get("runs", 0))
    if runs and not info.get("metrics"):
        text = f"{runs} successful run{'s' if runs != 1 else ''}, but no metric to summarise"
        text += " (record one with capture.metric(name, value))"
    else:
        text = "no successful runs to summarise"
    return f"{title}: {text}" if title else text


def _print_table(summary: pd.DataFrame, *, stats: Sequence[str], title: str) -> None:
    keys, per_metric = summary_cells(summary, stats)
    key_cells = [[_fmt(v) for v in summary[k].tolist()] for k in keys]
    n_rows = len(summary)
    try:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text
    except ImportError:
        _print_plain(title, keys, key_cells, per_metric, n_rows)
        return
    console = Console()
    # Text, never markup: names like "loss[min]" (or a store's "[red]") print as written.

    def width(header: str, cells: list[str]) -> int:
        return max([len(x) for x in header.split("\n")] + [len(c) for c in cells]) + 3

    def make(metrics: list[str], caption_title: str) -> Table:
        heading = Text(caption_title) if caption_title else None
        table = Table(title=heading, show_lines=False, title_justify="left")
        for k in keys:
            table.add_column(Text(k), justify="right", no_wrap=True)
        cells_all = []
        for m in metrics:
            for head, cells in per_metric[m]:
                label = f"{m}\n{head}"
                table.add_column(Text(label), justify="right", no_wrap=True)
                cells_all.append(cells)
        for i in range(n_rows):
            row = [*[kc[i] for kc in key_cells], *[c[i] for c in cells_all]]
            table.add_row(*[Text(c) for c in row])
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
