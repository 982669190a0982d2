"""``Results.frame``: a lazy Dask dataframe over a store's Parquet records and journals.

One partition per Parquet file (plus one for live journals).  Each partition reads
its file with the filters pushed down to the Parquet reader, renames columns to the
table names, fills columns it lacks with nulls, and drops records superseded by a
later attempt of the same run (found once, from the run_id and ended_at columns).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dask.dataframe as dd

    from .results import Results


def _read_source(source: tuple[str, str, str], *, layout_root: str, expr: Any,
                 names: dict[str, str], losers: Any, meta: Any, label: str | None) -> Any:
    import pandas as pd
    import pyarrow as pa

    from .store.layout import Layout
    from .store.reader import _read_file, concat, journal_tables

    kind, path, _ = source
    layout = Layout(Path(layout_root))
    if kind == "parquet":
        try:
            t = _read_file(Path(path), None, expr)
        except FileNotFoundError:  # compacted since the frame was built
            t = pa.table({})
    else:
        recs, _ = journal_tables(layout)
        t = concat(recs)
        if expr is not None and t.num_rows:
            t = t.filter(expr)
    if t.num_rows and losers is not None and len(losers):
        key = pd.MultiIndex.from_arrays([
            t.column("run_id").to_pandas(), t.column("ended_at").cast(pa.int64()).to_pandas()])
        t = t.filter(pa.array(~key.isin(losers)))
    df = t.to_pandas() if t.num_columns else pd.DataFrame()
    if label is not None:
        df["experiment"] = label
    df = df.rename(columns=names)
    out = pd.DataFrame({c: df[c] if c in df.columns else pd.Series(index=df.index, dtype=meta[c].dtype)
                        for c in meta.columns}, index=df.index)
    return out.astype(meta.dtypes.to_dict(), errors="ignore").reset_index(drop=True)


def lazy_frame(results: Results) -> dd.DataFrame:
    import dask.dataframe as dd
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .results import _ordered, user_names
    from .store.reader import concat, journal_tables, parquet_files

    names_all = results._schema_names()
    expr = results._filter_expr(names_all)
    schemas = []
    per_store = []
    for s in results._stores:
        label = results._experiment_name(s) if results._label else None
        files = parquet_files(s.layout.records)
        for f in files:
            try:
                schemas.append(pq.read_schema(f))
            except Exception:
                continue
            per_store.append((("parquet", str(f), str(s.root)), str(s.root), label))
        jrecs, _ = journal_tables(s.layout)
        if jrecs:
            schemas.append(concat(jrecs).schema)
            per_store.append((("journal", "", str(s.root)), str(s.root), label))
    losers = _losers(results)
    try:
        schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else None
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        schema = None
    raw_names = list(schema.names) if schema is not None else ["run_id", "status"]
    names = user_names(raw_names)
    order = _ordered(raw_names, names, full=True)
    if results._label:
        order = ["experiment", *order]
        names["experiment"] = "experiment"
    if schema is not None:
        empty = schema.empty_table().to_pandas()
    else:
        empty = pd.DataFrame({"run_id": pd.Series([], dtype="str"),
                              "status": pd.Series([], dtype="str")})
    if results._label:
        empty["experiment"] = pd.Series([], dtype="str")
    meta = empty[[c for c in order if c in empty.columns]].rename(columns=names)
    if not per_store:
        return dd.from_pandas(meta, npartitions=1)
    return dd.from_map(
        lambda item: _read_source(item[0], layout_root=item[1], expr=expr,
                                  names=names, losers=losers, meta=meta, label=item[2]),
        per_store,
        meta=meta,
        enforce_metadata=False,
    )


def _losers(results: Results) -> Any:
    import pandas as pd
    import pyarrow as pa

    from .store.reader import concat, journal_tables, parquet_files, _read_file

    frames = []
    for s in results._stores:
        tables = []
        for f in parquet_files(s.layout.records):
            try:
                tables.append(_read_file(f, ["run_id", "ended_at"], None))
            except Exception:
                continue
        jrecs, _ = journal_tables(s.layout)
        tables += [t.select(["run_id", "ended_at"]) for t in jrecs]
        t = concat(tables)
        if t.num_rows:
            frames.append(pd.DataFrame({
                "run_id": t.column("run_id").to_pandas(),
                "ended": t.column("ended_at").cast(pa.int64()).to_pandas(),
            }))
    if not frames:
        return None
    df = pd.concat(frames, ignore_index=True)
    dup = df["run_id"].duplicated(keep=False)
    if not dup.any():
        return None
    d = df[dup].sort_values(["run_id", "ended"])
    losers = d[d["run_id"].duplicated(keep="last")]
    return pd.MultiIndex.from_arrays([losers["run_id"], losers["ended"]])
