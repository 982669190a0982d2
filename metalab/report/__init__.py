"""A self-contained HTML report of a store: provenance, counts, summary, plots, failures.

The page needs no network and no server: CSS and the table sorter are inline and the
plots are inline SVG drawn with matplotlib (``pip install "metalab[plot]"``).

Examples
--------
>>> from metalab.report import write_report
>>> write_report("runs/pi_mc", "report.html")  # doctest: +SKIP
PosixPath('report.html')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["build_report", "write_report"]


def _store(store: str | os.PathLike[str] | Store) -> Store:
    from ..store import Store

    return store if isinstance(store, Store) else Store.open(store)


def build_report(
    store: str | os.PathLike[str] | Store, *, definitions: str = "current", reduce: str = "last"
) -> str:
    """The report of a store as one HTML document (a string).

    Parameters
    ----------
    store
        A store folder (``runs/<experiment>``) or an open :class:`metalab.store.Store`.
    definitions
        ``"current"`` (default): the runs of the store's current definition (its latest
        sweep's), with a note on how many runs of other definitions are left out;
        ``"all"``: every run, grouped by definition (see ``metalab.load_results``).
    reduce
        How a stepped metric becomes one number per run in the summary and plots:
        ``last``, ``min``, ``max`` or ``mean`` (shown as ``loss[last]``).

    Raises
    ------
    StoreError
        The folder is not a metalab store.
    ImportError
        matplotlib is not installed.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            'the HTML report draws its plots with matplotlib: pip install "metalab[plot]"'
        ) from None
    from ._data import load
    from ._html import render

    return render(load(_store(store), definitions=definitions, reduce=reduce))


def write_report(
    store: str | os.PathLike[str] | Store,
    path: str | os.PathLike[str] = "report.html",
    *,
    definitions: str = "current",
    reduce: str = "last",
) -> Path:
    """Write :func:`build_report` to ``path`` (UTF-8) and return the path."""
    from ..store.atomic import atomic_write_text

    html = build_report(store, definitions=definitions, reduce=reduce)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, html)
    return out
