"""The methods of :class:`~metalab.Results` for a search (``metalab.optimize``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

    from .selection import Selection


class SearchResults:
    """``trials``, ``best`` and the search plots, read from a search's store."""

    _sel: Selection

    def trials(self) -> pd.DataFrame:
        """A search's configurations, one row each: trial, params, aggregated metric, status."""
        from ..search.summary import search_spec, trials

        spec = search_spec(self._sel.stores[0].read_manifest())
        return trials(self._sel.arrow(full=True), spec)

    def best(self, *, include_pruned: bool = False) -> dict[str, Any]:
        """A search's best configuration: ``trial``, ``params``, ``value``, ``run_ids``."""
        from ..search.summary import best, search_spec

        spec = search_spec(self._sel.stores[0].read_manifest())
        return best(self.trials(), spec, include_pruned=include_pruned)

    def plot_history(self, ax: Axes | None = None) -> Axes:
        """A search's history: each trial's value and the best so far against trial."""
        from ..search.summary import plot_history, search_spec

        return plot_history(self.trials(), search_spec(self._sel.stores[0].read_manifest()), ax)

    def plot_params(self) -> Any:
        """A search's objective against each searched parameter (a matplotlib Figure)."""
        from ..search.summary import plot_params, search_spec

        return plot_params(self.trials(), search_spec(self._sel.stores[0].read_manifest()))
