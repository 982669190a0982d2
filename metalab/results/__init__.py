"""Reading a store: ``Results`` (table, lazy frame, summaries, plots) and ``Run``.

The modules, in reading order (each imports only those above it):

* ``naming``: raw record columns -> table names, column order, suggestions;
* ``query``: filter terms, their pushdown expressions, the pandas query compiler;
* ``scan``: a snapshot of the stores (journals, then Parquet footers), eager reading;
* ``frame``: the lazy Dask frame over a snapshot;
* ``selection``: what a ``Results`` describes, read on first use and cached;
* ``analysis``: group statistics (the one place they are computed) and their display;
* ``metric_frame``: stepped metrics, eager (``series``) and lazy (``metric_frame``);
* ``plotting``: matplotlib figures of group statistics;
* ``run``: ``Run``, one record; ``results``: ``Results`` and ``load_results``.
"""

from __future__ import annotations

from .results import Results, Run, load_results

__all__ = ["Results", "Run", "load_results"]
