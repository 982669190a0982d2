"""``Results.metric_frame()``: a lazy Dask frame of stepped metrics across runs.

One partition per ``metrics/*.parquet`` file of each store (plus one for live
journals).  Each partition reads its file (the metric name filter pushed down to the
Parquet reader) and keeps only the steps of each selected run's current record: the
``(run_id, sweep)`` pairs of the selected runs, found once when the frame is built.
The same step can sit in two files for a moment (a journal folded into Parquet while a
reader looks), so exact duplicates are dropped at the end.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd
    import pyarrow as pa

    from .results import Results

COLUMNS = ["run_id", "name", "step", "value", "time"]


def _meta(label: bool) -> pd.DataFrame:
    from ..store.records import STEP_SCHEMA

    df = STEP_SCHEMA.empty_table().to_pandas()[COLUMNS]
    if label:
        df.insert(0, "experiment", df["run_id"].copy())
    return df


def _read(
    item: tuple[str, str, str | None],
    *,
    keys: dict[str, pa.Table],
    metric: str | None,
    meta: pd.DataFrame,
) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.dataset as ds

    from ..store.layout import Layout
    from ..store.reader import concat, journal_tables, read_or_quarantine
    from ..store.records import STEP_SCHEMA

    kind, path, label = item
    expr = ds.field("name") == metric if metric is not None else None
    if kind == "parquet":
        # None: compacted since the frame was built (its rows moved), or damaged (then
        # quarantined with a warning, never returned as data).
        file = Path(path)
        t = read_or_quarantine(Layout(file.parent.parent), file, None, expr)
        t = STEP_SCHEMA.empty_table() if t is None else t
    else:
        _, steps = journal_tables(Layout(Path(path)))
        t = concat(steps, STEP_SCHEMA)
        if expr is not None and t.num_rows:
            t = t.filter(expr)
    mine = keys[label or ""]
    if t.num_rows and mine.num_rows:
        t = t.join(mine, keys=["run_id", "sweep"], join_type="inner")
    else:
        t = t.slice(0, 0)
    df = t.select(COLUMNS).cast(pa.schema([STEP_SCHEMA.field(c) for c in COLUMNS])).to_pandas()
    if label is not None:
        df.insert(0, "experiment", label)
    return df.astype(meta.dtypes.to_dict())


def metric_frame(results: Results, name: str | None = None) -> dd.DataFrame:
    """The lazy long frame of stepped metrics of the selected runs (see ``Results``)."""
    import dask.dataframe as dd
    import pyarrow.compute as pc

    from ..store.journal import list_journals
    from ..store.reader import parquet_files

    whole = results._derive(columns=None) if results._columns is not None else results
    runs = whole._arrow()
    labelled = "experiment" in runs.column_names
    meta = _meta(labelled)
    keys: dict[str, pa.Table] = {}
    items: list[tuple[str, str, str | None]] = []
    for store, label in whole._pairs():
        mine = runs
        if label is not None and labelled:
            mine = runs.filter(pc.equal(runs.column("experiment"), label))
        keys[label or ""] = mine.select(["run_id", "sweep"]).combine_chunks()
        if mine.num_rows == 0:
            continue
        store.check_metric_files()  # a damaged file is quarantined, never read as data
        items += [("parquet", str(f), label) for f in parquet_files(store.layout.metrics)]
        if list_journals(store.layout.journal):
            items.append(("journal", str(store.root), label))
    if not items:
        return dd.from_pandas(meta, npartitions=1)
    read = functools.partial(_read, keys=keys, metric=name, meta=meta)
    ddf = dd.from_map(read, items, meta=meta, enforce_metadata=False, label="metalab-metric-frame")
    subset = ["run_id", "name", "step", "time", *(["experiment"] if labelled else [])]
    return ddf.drop_duplicates(subset=subset, split_out=ddf.npartitions)
