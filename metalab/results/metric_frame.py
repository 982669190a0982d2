"""Stepped metrics of selected runs: ``Results.series()`` (eager) and ``metric_frame()`` (lazy).

Both read the stepped-metrics tables of each store and keep only the steps of each
selected run's current record: the ``(run_id, sweep)`` pairs of the selected runs.  The
lazy frame has one partition per ``metrics/*.parquet`` file of each store (plus one for
live journals); each reads its file with the metric name filter pushed down to the
Parquet reader.  The same step can sit in two files for a moment (a journal folded into
Parquet while a reader looks), so duplicates are dropped at the end.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..store.records import (
    RUN_ID,
    STEP,
    STEP_NAME,
    STEP_SCHEMA,
    STEP_TIME,
    STEP_VALUE,
    SWEEP,
)
from .naming import EXPERIMENT

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd
    import pyarrow as pa

    from ..store import Store

__all__ = [
    "COLUMNS",
    "REDUCTIONS",
    "StoreRuns",
    "check_reduce",
    "metric_frame",
    "reduced_steps",
    "series_table",
    "split_reduce",
    "stepped_names",
]

COLUMNS = [RUN_ID, STEP_NAME, STEP, STEP_VALUE, STEP_TIME]
#: How a stepped metric becomes one number per run; ``last`` is the record's own value.
REDUCTIONS = ("last", "min", "max", "mean")
#: (store, label, the store's selected records): ``label`` is None for a single store.
StoreRuns = tuple["Store", "str | None", "pa.Table"]


# ------------------------------------------------------------------------------- eager
def series_table(
    runs: Sequence[StoreRuns], *, names: dict[str, str], metric: str | None
) -> pd.DataFrame:
    """Long table of stepped metrics: run_id, [experiment], params..., replicate, name, step, value.

    ``runs`` hold ``run_id, sweep`` and the descriptive columns to repeat on each step
    (raw names; ``names`` renames them).  Rows are sorted by those columns and step.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds

    from ..store import read_steps

    keep = [c for c in runs[0][2].column_names if c not in (RUN_ID, SWEEP)] if runs else []
    cols = [RUN_ID, *keep, STEP_NAME, STEP, STEP_VALUE]
    parts = []
    for store, _label, mine in runs:
        if mine.num_rows == 0:
            continue
        expr = ds.field(RUN_ID).isin(mine.column(RUN_ID).combine_chunks())
        if metric is not None:
            expr = expr & (ds.field(STEP_NAME) == metric)
        steps = read_steps(store.layout, filter=expr)
        if steps.num_rows:
            # Only the steps of each run's current record (the attempt its record comes from).
            parts.append(steps.join(mine, keys=[RUN_ID, SWEEP], join_type="inner"))
    if not parts:
        empty = {
            names.get(c, c): pd.Series([], dtype="float64" if c == STEP_VALUE else "object")
            for c in cols
        }
        return pd.DataFrame(empty)
    df = pa.concat_tables(parts, promote_options="permissive").select(cols).to_pandas()
    df.columns = [names.get(c, c) for c in cols]
    df = df.drop_duplicates(subset=[RUN_ID, STEP_NAME, STEP], keep="last")
    order = [c for c in [*df.columns[1 : 1 + len(keep)], STEP_NAME, STEP] if c in df.columns]
    return df.sort_values(order, kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------- reductions
def check_reduce(reduce: str) -> str:
    """``reduce`` if it is one of :data:`REDUCTIONS`, else a ResultsError naming them."""
    from ..errors import ResultsError

    if reduce not in REDUCTIONS:
        raise ResultsError(
            f"reduce={reduce!r} is not one of {list(REDUCTIONS)}: how a stepped metric "
            "becomes one number per run, e.g. reduce='max'"
        )
    return reduce


def split_reduce(metric: str) -> tuple[str, str | None]:
    """``"loss[min]"`` -> ``("loss", "min")``; a name without a reduction -> ``(name, None)``."""
    if metric.endswith("]") and "[" in metric:
        name, _, how = metric[:-1].rpartition("[")
        if how in REDUCTIONS:
            return name, how
    return metric, None


def _steps_of(runs: Sequence[StoreRuns], names: Sequence[str] | None) -> list[pa.Table]:
    """The current steps of the selected runs (optionally of some metric names only)."""
    import pyarrow.dataset as ds

    from ..store import read_steps

    parts = []
    for store, _label, mine in runs:
        if mine.num_rows == 0:
            continue
        expr = ds.field(RUN_ID).isin(mine.column(RUN_ID).combine_chunks())
        if names is not None:
            expr = expr & ds.field(STEP_NAME).isin(list(names))
        steps = read_steps(store.layout, filter=expr)
        if steps.num_rows:
            keys = mine.select([RUN_ID, SWEEP])
            parts.append(steps.join(keys, keys=[RUN_ID, SWEEP], join_type="inner"))
    return parts


def stepped_names(runs: Sequence[StoreRuns]) -> set[str]:
    """Names of the metrics that some selected run recorded with steps."""
    import pyarrow.compute as pc

    return {n for t in _steps_of(runs, None) for n in pc.unique(t.column(STEP_NAME)).to_pylist()}


def reduced_steps(runs: Sequence[StoreRuns], names: Sequence[str], how: str) -> pd.DataFrame:
    """One row per run (index ``run_id``), one column per stepped metric: its ``how`` value.

    ``how`` is ``min``, ``max`` or ``mean`` over the steps of each run's current record
    (NaN points are skipped, as pandas does).
    """
    import pandas as pd
    import pyarrow as pa

    parts = _steps_of(runs, names)
    if not parts:
        return pd.DataFrame(index=pd.Index([], name=RUN_ID, dtype="object"))
    steps = pa.concat_tables(parts, promote_options="permissive").to_pandas()
    steps = steps.drop_duplicates(subset=[RUN_ID, STEP_NAME, STEP, STEP_TIME])
    out: pd.DataFrame = steps.pivot_table(
        index=RUN_ID, columns=STEP_NAME, values=STEP_VALUE, aggfunc=how, dropna=False
    )
    return out


# -------------------------------------------------------------------------------- lazy
def _meta(label: bool, extra: pa.Table | None = None, names: Sequence[str] = ()) -> pd.DataFrame:
    df = STEP_SCHEMA.empty_table().to_pandas()[COLUMNS]
    if extra is not None and names:
        df = _with_extra(df, extra.slice(0, 0), names)
    if label:
        df.insert(0, EXPERIMENT, df[RUN_ID].copy())
    return df


def _with_extra(df: pd.DataFrame, extra: pa.Table, names: Sequence[str]) -> pd.DataFrame:
    """``df`` with the columns of ``extra`` (same rows) after ``run_id``, renamed ``names``."""
    import pandas as pd

    from .frame import to_frame_pandas

    more = to_frame_pandas(extra, dict(zip(extra.column_names, names, strict=True)))
    more.index = df.index
    return pd.concat([df[[RUN_ID]], more, df.drop(columns=[RUN_ID])], axis=1)


def _read_parquet(path: Path, expr: Any) -> pa.Table:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    if expr is None:
        return pf.read()
    return pq.read_table(path, filters=expr, schema=pf.schema_arrow)


def _read(
    item: tuple[str, str, str | None],
    *,
    keys: dict[str, pa.Table],
    metric: str | None,
    meta: pd.DataFrame,
    extra: dict[str, str],
) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.dataset as ds

    from ..store.layout import Layout
    from ..store.reader import concat, journal_tables, read_or_quarantine

    kind, path, label = item
    expr = ds.field(STEP_NAME) == metric if metric is not None else None
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
        t = t.join(mine, keys=[RUN_ID, SWEEP], join_type="inner")
    else:
        t = t.slice(0, 0)
    df = t.select(COLUMNS).cast(pa.schema([STEP_SCHEMA.field(c) for c in COLUMNS])).to_pandas()
    if extra:
        df = _with_extra(df, t.select(list(extra)), list(extra.values()))
    if label is not None:
        df.insert(0, EXPERIMENT, label)
    return df.astype(meta.dtypes.to_dict())


def metric_frame(
    runs: Sequence[StoreRuns], *, name: str | None, extra: dict[str, str] | None = None
) -> dd.DataFrame:
    """The lazy long frame of stepped metrics of the selected runs (see ``Results``).

    ``runs`` hold the ``run_id, sweep`` of each store's selected records, and the
    ``extra`` columns (raw name -> frame name) repeated on each step after ``run_id``.
    """
    import dask.dataframe as dd

    from ..store.journal import list_journals
    from ..store.reader import parquet_files

    extra = dict(extra or {})
    labelled = any(label is not None for _s, label, _t in runs)
    meta = _meta(labelled, runs[0][2].select(list(extra)) if runs else None, list(extra.values()))
    keys: dict[str, pa.Table] = {}
    items: list[tuple[str, str, str | None]] = []
    for store, label, mine in runs:
        keys[label or ""] = mine.select([RUN_ID, SWEEP, *extra]).combine_chunks()
        if mine.num_rows == 0:
            continue
        store.check_metric_files()  # a damaged file is quarantined, never read as data
        items += [("parquet", str(f), label) for f in parquet_files(store.layout.metrics)]
        if list_journals(store.layout.journal):
            items.append(("journal", str(store.root), label))
    if not items:
        empty: dd.DataFrame = dd.from_pandas(meta, npartitions=1)
        return empty
    read = functools.partial(_read, keys=keys, metric=name, meta=meta, extra=extra)
    ddf = dd.from_map(read, items, meta=meta, enforce_metadata=False, label="metalab-metric-frame")
    subset = [RUN_ID, STEP_NAME, STEP, STEP_TIME, *([EXPERIMENT] if labelled else [])]
    out: dd.DataFrame = ddf.drop_duplicates(subset=subset, split_out=ddf.npartitions)
    return out
