"""Results: the runs of a store as a table, a lazy Dask frame, and individual Run objects."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ArtifactIntegrityError, StoreError
from .store import Store
from .store.records import BASE_COLUMNS, METRIC_PREFIX, PARAM_PREFIX

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd
    import pyarrow as pa

__all__ = ["Results", "Run", "load_results"]

#: Column order of the user-facing table (params and metrics are placed around these).
_FRONT = ["run_id"]
_MIDDLE = ["replicate", "seed", "status"]
_BACK = ["duration_s", "started_at", "ended_at", "attempt", "error_type", "error_message"]
_HIDDEN = {"params", "traceback", "artifacts", "logs", "host", "pid", "worker", "sweep"}


def user_names(raw: Sequence[str]) -> dict[str, str]:
    """Map raw record columns to table names: ``params.lr`` -> ``lr``, ``metrics.acc`` -> ``acc``.

    A param or metric whose bare name collides with another column keeps its prefix.
    """
    taken = {c for c in raw if not c.startswith((PARAM_PREFIX, METRIC_PREFIX))}
    out: dict[str, str] = {}
    for prefix in (PARAM_PREFIX, METRIC_PREFIX):
        for c in raw:
            if c.startswith(prefix):
                bare = c[len(prefix):]
                if bare in taken:
                    out[c] = c
                else:
                    out[c] = bare
                    taken.add(bare)
    for c in raw:
        out.setdefault(c, c)
    return out


def _ordered(raw: Sequence[str], names: dict[str, str], *, full: bool) -> list[str]:
    params = [c for c in raw if c.startswith(PARAM_PREFIX)]
    metrics = [c for c in raw if c.startswith(METRIC_PREFIX)]
    order = [c for c in _FRONT if c in raw] + params + [c for c in _MIDDLE if c in raw]
    order += metrics + [c for c in _BACK if c in raw]
    if full:
        order += [c for c in raw if c not in order]
    else:
        order += [c for c in raw if c not in order and c not in _HIDDEN and c in BASE_COLUMNS]
    return order


class Results:
    """The runs of one or more stores: tabular, filterable, lazily loaded.

    ``metalab.run`` returns the runs of the experiment it ran; ``metalab.load_results``
    returns every run of a store (or of several, with an ``experiment`` column).
    """

    def __init__(
        self,
        stores: Sequence[Store],
        *,
        run_ids: Any = None,
        equals: dict[str, Any] | None = None,
        label_experiments: bool = False,
    ) -> None:
        self._stores = list(stores)
        self._run_ids = run_ids
        self._equals = dict(equals or {})
        self._label = label_experiments
        self._raw: pd.DataFrame | None = None
        self._table: pa.Table | None = None

    # loading -------------------------------------------------------------------
    def _experiment_name(self, store: Store) -> str:
        return str(store.read_manifest().get("experiment", store.root.name))

    def _filter_expr(self, names: set[str]) -> Any:
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        expr = None
        for key, value in self._equals.items():
            col = self._resolve(key, names)
            if col is None:
                continue
            if isinstance(value, (list, tuple, set, frozenset)):
                e = ds.field(col).isin(list(value))
            elif value is None:
                e = ds.field(col).is_null()
            else:
                e = ds.field(col) == value
            expr = e if expr is None else expr & e
        if self._run_ids is not None:
            import pyarrow as pa

            ids = pa.array(list(self._run_ids) if not hasattr(self._run_ids, "to_numpy")
                           else self._run_ids.astype(str).to_numpy(), type=pa.string())
            e = pc.is_in(ds.field("run_id"), value_set=ids)
            expr = e if expr is None else expr & e
        return expr

    @staticmethod
    def _resolve(key: str, names: set[str]) -> str | None:
        for cand in (key, PARAM_PREFIX + key, METRIC_PREFIX + key):
            if cand in names:
                return cand
        return None

    def _schema_names(self) -> set[str]:
        import pyarrow.parquet as pq

        from .store.reader import journal_tables, parquet_files

        names: set[str] = set(BASE_COLUMNS)
        for s in self._stores:
            for f in parquet_files(s.layout.records):
                try:
                    names.update(pq.read_schema(f).names)
                except (OSError, Exception):
                    continue
            for t in journal_tables(s.layout)[0]:
                names.update(t.column_names)
        return names

    def _arrow(self, columns: list[str] | None = None) -> pa.Table:
        from .store.reader import concat

        names = self._schema_names() if self._equals else set(BASE_COLUMNS)
        for key in self._equals:
            if self._resolve(key, names) is None:
                import difflib

                params = sorted(n[len(PARAM_PREFIX):] for n in names if n.startswith(PARAM_PREFIX))
                hint = difflib.get_close_matches(key, params, n=1)
                raise KeyError(
                    f"filter({key}=...): no parameter, metric or column named {key!r}"
                    + (f"; did you mean {hint[0]!r}?" if hint else f"; parameters: {params}")
                )
        expr = self._filter_expr(names)
        tables = []
        for s in self._stores:
            t = s.records(columns=columns, filter=expr)
            if self._label:
                import pyarrow as pa

                t = t.append_column("experiment", pa.array([self._experiment_name(s)] * len(t)))
            tables.append(t)
        return concat(tables)

    def _arrow_cached(self) -> pa.Table:
        if self._table is None:
            self._table = self._arrow()
        return self._table

    def _records(self) -> pd.DataFrame:
        """All record columns (raw names) of the selected runs, as pandas (cached)."""
        if self._raw is None:
            df = self._arrow_cached().to_pandas()
            if "experiment" in df.columns:
                df = df[["experiment", *[c for c in df.columns if c != "experiment"]]]
            self._raw = df
        return self._raw

    def _derive(self, **changes: Any) -> Results:
        kw: dict[str, Any] = {
            "run_ids": self._run_ids, "equals": self._equals, "label_experiments": self._label,
        }
        kw.update(changes)
        return Results(self._stores, **kw)

    # tables -------------------------------------------------------------------
    def to_pandas(self, *, full: bool = False) -> pd.DataFrame:
        """The runs as a pandas DataFrame: run_id, one column per param and metric, status..."""
        raw = self._records()
        order = _ordered(list(raw.columns), user_names(list(raw.columns)), full=full)
        if "experiment" in raw.columns:
            order = ["experiment", *[c for c in order if c != "experiment"]]
        df = raw[order]
        return df.rename(columns=user_names(order))

    def table(self, as_dataframe: bool = False, *, max_rows: int = 60) -> Any:
        """The runs as a table: printable text, or a pandas DataFrame with ``as_dataframe``."""
        df = self.to_pandas()
        if as_dataframe:
            return df
        if df.empty:
            return "(no runs)"
        show = df.drop(columns=[c for c in ("seed", "started_at", "ended_at", "attempt",
                                             "error_type", "error_message") if c in df.columns])
        show = show.assign(run_id=show["run_id"].str.slice(0, 8))
        return show.to_string(index=False, max_rows=max_rows, float_format=lambda x: f"{x:.6g}")

    def to_csv(self, path: str | os.PathLike[str], **kwargs: Any) -> None:
        """Write the table to a CSV file."""
        self.to_pandas().to_csv(path, index=False, **kwargs)

    def to_parquet(self, path: str | os.PathLike[str]) -> None:
        """Write the table to one Parquet file."""
        self.to_pandas().to_parquet(path, index=False)

    @property
    def frame(self) -> dd.DataFrame:
        """A lazy ``dask.dataframe.DataFrame`` over the store's Parquet records."""
        from ._frame import lazy_frame

        return lazy_frame(self)

    # selection ----------------------------------------------------------------
    def filter(self, **equals: Any) -> Results:
        """Runs whose params/metrics/columns equal the given values (a list means "one of")."""
        merged = {**self._equals, **equals}
        return self._derive(equals=merged)

    @property
    def successful(self) -> Results:
        """Runs whose status is ``"success"``."""
        return self._derive(equals={**self._equals, "status": "success"})

    @property
    def failed(self) -> Results:
        """Runs that did not succeed (failed, timeout)."""
        return self._derive(equals={**self._equals, "status": ["failed", "timeout"]})

    def __len__(self) -> int:
        return int(self._arrow_cached().num_rows)

    def __getitem__(self, i: int | str) -> Run:
        """The ``i``-th run (table order), or the run with a given run id."""
        table = self._arrow_cached()
        n = table.num_rows
        if isinstance(i, str):
            import pyarrow.compute as pc

            hits = pc.indices_nonzero(pc.equal(table.column("run_id"), i)).to_pylist()
            if not hits:
                raise KeyError(f"no run with id {i!r}")
            i = int(hits[0])
        if not -n <= i < n:
            raise IndexError(f"run index {i} out of range for {n} runs")
        row = table.slice(i % n, 1).to_pylist()[0]
        return Run(row, self._store_of(row))

    def __iter__(self) -> Iterator[Run]:
        for batch in self._arrow_cached().to_batches(max_chunksize=4096):
            for row in batch.to_pylist():
                yield Run(row, self._store_of(row))

    def _store_of(self, row: dict[str, Any]) -> Store:
        if len(self._stores) == 1:
            return self._stores[0]
        name = row.get("experiment")
        for s in self._stores:
            if self._experiment_name(s) == name:
                return s
        return self._stores[0]

    # summaries ---------------------------------------------------------------
    def metric_names(self) -> list[str]:
        raw = self._records()
        names = user_names(list(raw.columns))
        return [names[c] for c in raw.columns if c.startswith(METRIC_PREFIX)]

    def param_names(self) -> list[str]:
        raw = self._records()
        names = user_names(list(raw.columns))
        return [names[c] for c in raw.columns if c.startswith(PARAM_PREFIX)]

    def summary(
        self,
        group_by: Sequence[str] | str | None = None,
        metrics: Sequence[str] | None = None,
        stats: Sequence[str] = ("mean", "std", "count"),
    ) -> pd.DataFrame:
        """Per-group statistics of each metric across replicates (successful runs only)."""
        from .analysis import summarize

        return summarize(self, group_by=group_by, metrics=metrics, stats=stats)

    def display(
        self,
        group_by: Sequence[str] | str | None = None,
        metrics: Sequence[str] | None = None,
        stats: Sequence[str] = ("mean", "std", "count"),
    ) -> None:
        """Print :meth:`summary` as a table (a rich table when rich is installed)."""
        from .analysis import print_summary

        print_summary(self.summary(group_by=group_by, metrics=metrics, stats=stats),
                      title=self._title())

    def _title(self) -> str:
        names = sorted({self._experiment_name(s) for s in self._stores})
        return ", ".join(names)

    def counts(self) -> dict[str, int]:
        """Number of runs by status."""
        raw = self._records()
        return {str(k): int(v) for k, v in raw["status"].value_counts().items()}

    def __repr__(self) -> str:
        c = self.counts()
        parts = ", ".join(f"{v} {k}" for k, v in sorted(c.items())) or "no runs"
        return f"<Results {self._title()}: {sum(c.values())} runs ({parts})>"


class Run:
    """One run's record: params, seed, status, metrics, error, logs and artifacts."""

    def __init__(self, row: dict[str, Any], store: Store) -> None:
        self._row = row
        self._store = store

    @property
    def run_id(self) -> str:
        return str(self._row["run_id"])

    @property
    def params(self) -> dict[str, Any]:
        return dict(json.loads(self._row["params"]))

    @property
    def seed(self) -> int:
        return int(self._row["seed"])

    @property
    def replicate(self) -> int:
        return int(self._row["replicate"])

    @property
    def status(self) -> str:
        return str(self._row["status"])

    @property
    def attempt(self) -> int:
        return int(self._row["attempt"])

    @property
    def duration_s(self) -> float:
        return float(self._row["duration_s"])

    @property
    def record(self) -> dict[str, Any]:
        """The raw record (every stored column)."""
        return dict(self._row)

    @property
    def metrics(self) -> dict[str, Any]:
        return {
            k[len(METRIC_PREFIX):]: v
            for k, v in self._row.items()
            if k.startswith(METRIC_PREFIX) and v is not None
        }

    @property
    def error(self) -> dict[str, str] | None:
        """``{"type", "message", "traceback"}`` of a failed run, else None."""
        if not self._row.get("error_type"):
            return None
        return {
            "type": self._row.get("error_type") or "",
            "message": self._row.get("error_message") or "",
            "traceback": self._row.get("traceback") or "",
        }

    @property
    def logs(self) -> str:
        """The run's log: one line per ``capture.log`` call (and captured output)."""
        import datetime as _dt

        raw = self._row.get("logs")
        if not raw:
            return ""
        lines = []
        for t, level, msg in json.loads(raw):
            ts = _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%H:%M:%S.%f")[:-3]
            lines.append(f"{ts} {level.upper():<7} {msg}")
        return "\n".join(lines)

    @property
    def artifacts(self) -> list[dict[str, Any]]:
        """The artifact manifest: name, format, path, size, sha256 of each artifact."""
        raw = self._row.get("artifacts")
        return list(json.loads(raw)) if raw else []

    def _artifact_entry(self, name: str) -> dict[str, Any]:
        for a in self.artifacts:
            if a["name"] == name:
                return a
        known = sorted({a["name"] for a in self.artifacts})
        raise KeyError(f"run {self.run_id[:8]} has no artifact {name!r}; it has {known}")

    def artifact_path(self, name: str, format: str | None = None) -> Path:
        """The file of an artifact inside the store."""
        entries = [a for a in self.artifacts if a["name"] == name]
        if format is not None:
            entries = [a for a in entries if a["format"] == format]
        entry = entries[0] if entries else self._artifact_entry(name)
        return self._store.root / entry["path"]

    def artifact(self, name: str, *, format: str | None = None, allow_pickle: bool = False) -> Any:
        """Load an artifact, verifying its sha256 first (pickles need ``allow_pickle=True``)."""
        from .capture.serializers import load_artifact
        from .capture import _sha256_file

        entries = [a for a in self.artifacts if a["name"] == name]
        if format is not None:
            entries = [a for a in entries if a["format"] == format]
        entry = entries[0] if entries else self._artifact_entry(name)
        path = self._store.root / entry["path"]
        if not path.exists():
            raise StoreError(2, f"artifact file {path} is missing", str(path))
        digest = _sha256_file(path)
        if digest != entry["sha256"]:
            raise ArtifactIntegrityError(
                5,
                f"artifact {name!r} of run {self.run_id[:8]} is damaged: sha256 {digest[:12]}... "
                f"does not match the recorded {entry['sha256'][:12]}...; the file {path} was "
                "changed or corrupted after the run wrote it. Re-run with resume=False to "
                "recreate it",
                str(path),
            )
        return load_artifact(entry["format"], path, allow_pickle=allow_pickle)

    def metric_series(self, name: str) -> pd.Series:
        """A stepped metric of this run as a pandas Series indexed by step."""
        import pandas as pd
        import pyarrow.dataset as ds

        from .store import read_steps

        expr = (ds.field("run_id") == self.run_id) & (ds.field("name") == name)
        t = read_steps(self._store.layout, filter=expr).to_pandas()
        sweep = self._row.get("sweep")
        if sweep is not None and len(t):
            t = t[t["sweep"] == sweep]
        s = pd.Series(t["value"].to_numpy(), index=pd.Index(t["step"].to_numpy(), name="step"),
                      name=name)
        return s.sort_index()

    def __repr__(self) -> str:
        m = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in list(self.metrics.items())[:4])
        return f"<Run {self.run_id[:8]} {self.status} params={self.params} {m}>"


def load_results(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> Results:
    """Open the results of one store, or of several stores side by side.

    With a list of stores, the table gets an ``experiment`` column.
    """
    if isinstance(path, (str, os.PathLike)):
        return Results([Store.open(path)])
    stores = [Store.open(p) for p in path]
    if not stores:
        raise ValueError("load_results() needs at least one store path")
    return Results(stores, label_experiments=len(stores) > 1)
