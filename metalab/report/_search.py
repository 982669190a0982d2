"""The report's section of a search (``metalab.optimize``): its history and parameters."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from ._plots import _RC, _new_figure, _rc_context, _style, to_svg

if TYPE_CHECKING:
    from ._data import ReportData


def is_search(data: ReportData) -> bool:
    """The store holds a search: its manifest describes ``metalab.optimize``."""
    return (data.manifest.get("params") or {}).get("kind") == "optimize"


def search_plots(data: ReportData) -> list[tuple[str, str]]:
    """(caption, svg) of the optimisation history and of the objective per parameter."""
    from ..results.results import load_results
    from ..search.summary import plot_history, plot_params, search_spec

    spec = search_spec(data.manifest)
    df = load_results(data.store if data.store is not None else data.root).trials()
    if not len(df):
        return []
    metric = spec["metric"]
    out = []
    with _rc_context(_RC):
        fig = _new_figure(6.0, 3.2)
        ax = plot_history(df, spec, fig.add_subplot())
        _style(ax)
        out.append((f"{metric} by trial, and the best so far", to_svg(fig, "s0")))
        names = [k for k in spec.get("space", {}) if k in df.columns]
        if names:
            fig = _new_figure(min(3.0 * len(names), 12.0), 3.0)
            for ax in plot_params(df, spec, fig).axes:
                _style(ax)
            out.append((f"{metric} against each searched parameter", to_svg(fig, "s1")))
    return out


def render_search(data: ReportData) -> str:
    """The section's HTML: what was searched, and the two figures."""
    from ..search.summary import search_spec

    spec = search_spec(data.manifest)
    figs = "\n".join(
        f"<figure>{svg}<figcaption>{escape(cap)}</figcaption></figure>"
        for cap, svg in search_plots(data)
    )
    what = (
        f"{spec['direction']} {spec['metric']} over {spec['n']} trials "
        f"(sampler {spec.get('sampler')}, pruner {spec.get('pruner')}, seed {spec.get('seed')})"
    )
    return f'<p class="muted">{escape(what)}</p><div class="grid">{figs}</div>'
