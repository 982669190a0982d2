"""Reading a store: ``Results`` (table, lazy frame, summaries, plots) and ``Run``.

Modules: ``results`` (the ``Results`` selection and ``load_results``), ``scan`` (reading
journals and Parquet footers into one deduplicated snapshot, the query compiler and the
lazy frame), ``metric_frame`` (stepped metrics), ``analysis`` (group statistics) and
``plotting`` (matplotlib figures).
"""

from __future__ import annotations

from .results import Results, Run, load_results

__all__ = ["Results", "Run", "load_results"]
