"""Results: the runs of a store as a table, a lazy Dask frame, summaries, plots and Run objects.

``Results`` is a description of a selection (stores, filters, columns), read on first
use and cached.  Filters on params and status are pushed down to the Parquet reader
(see :mod:`metalab.results.scan`); every derived ``Results`` (``filter``, ``query``,
``select``, ``successful``) filters an already loaded parent in memory instead.
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ArtifactIntegrityError, ResultsError, StoreError
from ..store import Store
from ..store.records import METRIC_PREFIX, PARAM_PREFIX

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd
    import pyarrow as pa

    from .scan import Clause, Scan

__all__ = ["Results", "ResultsError", "Run", "load_results"]

#: Column order of the user-facing table (params and metrics are placed around these).
_FRONT = ["run_id"]
_MIDDLE = ["replicate", "seed", "status"]
_BACK = [
    "duration_s",
    "started_at",
    "ended_at",
    "attempt",
    "retries",
    "error_type",
    "error_message",
]
_HIDDEN = {"params", "traceback", "artifacts", "logs", "host", "pid", "worker", "sweep"}
#: Columns every loaded table keeps, whatever is selected (counts, order, dedupe).
_INTERNAL = ["run_id", "status", "replicate", "started_at", "ended_at", "attempt", "sweep"]
_STATUSES = ("success", "failed", "timeout")


def user_names(raw: Sequence[str]) -> dict[str, str]:
    """Map raw record columns to table names: ``params.lr`` -> ``lr``, ``metrics.acc`` -> ``acc``.

    A param or metric named like a core column (``status``, ``seed``, ...), or like a
    param claimed first, keeps its prefix.  One named like a bookkeeping column (``pid``,
    ``host``, ``worker``, ``logs``, ...) takes the bare name, and the bookkeeping column
    becomes ``record.<name>``: the user's names win where nothing important is hidden.
    """
    internal = [c for c in raw if not c.startswith((PARAM_PREFIX, METRIC_PREFIX))]
    taken = {c for c in internal if c not in _HIDDEN}
    out: dict[str, str] = {}
    for prefix in (PARAM_PREFIX, METRIC_PREFIX):
        for c in raw:
            if c.startswith(prefix):
                bare = c[len(prefix) :]
                if bare in taken:
                    out[c] = c
                else:
                    out[c] = bare
                    taken.add(bare)
    for c in internal:
        out[c] = f"record.{c}" if c in _HIDDEN and c in taken else c
    return out


def _ordered(raw: Sequence[str], *, full: bool) -> list[str]:
    params = [c for c in raw if c.startswith(PARAM_PREFIX)]
    metrics = [c for c in raw if c.startswith(METRIC_PREFIX)]
    order = [c for c in ["experiment", *_FRONT] if c in raw] + params
    order += [c for c in _MIDDLE if c in raw] + metrics + [c for c in _BACK if c in raw]
    if full:
        order += [c for c in raw if c not in order]
    return order


def _suggest(key: str, names: Sequence[str]) -> str:
    import difflib

    hint = difflib.get_close_matches(key, list(names), n=1)
    return f"did you mean {hint[0]!r}?" if hint else f"columns are {sorted(names)}"


class Results:
    """The runs of one or more stores: tabular, filterable, lazily loaded.

    ``metalab.run`` returns the runs of the experiment it ran, in plan order;
    ``metalab.load_results`` returns every run of a store (or of several, with an
    ``experiment`` column), ordered by start time.

    Examples
    --------
    >>> result = metalab.load_results("./runs/pi_mc")  # doctest: +SKIP
    >>> result.filter(n_samples=[1000, 10000]).summary(group_by="n_samples")  # doctest: +SKIP
    >>> result.query("pi_estimate > 3.1 and status == 'success'").to_pandas()  # doctest: +SKIP
    """

    def __init__(
        self,
        stores: Sequence[Store],
        *,
        run_ids: Any = None,
        equals: dict[str, Any] | None = None,
        label_experiments: bool = False,
        queries: Sequence[tuple[str, dict[str, Any]]] = (),
        columns: Sequence[str] | None = None,
        base: Results | None = None,
    ) -> None:
        self._stores = list(stores)
        self._run_ids = run_ids
        self._equals = dict(equals or {})
        self._label = label_experiments
        self._queries = list(queries)
        self._columns = list(columns) if columns is not None else None
        self._base = base
        self._snap: Scan | None = None
        self._core: pa.Table | None = None
        self._full: pa.Table | None = None
        self._labels: dict[int, str] = {}

    # snapshot and names ------------------------------------------------------------
    def _experiment_name(self, store: Store) -> str:
        key = id(store)
        if key not in self._labels:
            self._labels[key] = str(store.read_manifest().get("experiment", store.root.name))
        return self._labels[key]

    def _pairs(self) -> list[tuple[Store, str | None]]:
        pairs = [(s, self._experiment_name(s) if self._label else None) for s in self._stores]
        want = self._equals.get("experiment")
        if want is not None and self._label:
            allowed = set(want) if isinstance(want, (list, tuple, set, frozenset)) else {want}
            pairs = [p for p in pairs if p[1] in allowed]
        return pairs

    def _snapshot(self) -> Scan:
        if self._snap is None:
            if self._base is not None:
                self._snap = self._base._snapshot()
            else:
                from .scan import scan

                self._snap = scan(self._pairs())
        return self._snap

    @property
    def _names(self) -> dict[str, str]:
        snap = self._snapshot()
        if not snap.names:
            snap.names = user_names(snap.schema.names)
            snap.names["experiment"] = "experiment"
        return snap.names

    def _lookup(self) -> dict[str, str]:
        """Every accepted spelling of a column (table name, raw name) -> raw name."""
        names = self._names
        out = {user: raw for raw, user in names.items()}  # table names first
        for raw in names:
            out.setdefault(raw, raw)
        return out

    def _raw(self, key: str, what: str) -> str:
        raw = self._lookup().get(key)
        if raw is None:
            visible = [u for r, u in self._names.items() if r not in _HIDDEN]
            raise ResultsError(
                f"{what}: no parameter, metric or column named {key!r}; " + _suggest(key, visible)
            )
        return raw

    def _ids(self) -> pa.Array | None:
        if self._run_ids is None:
            return None
        import pyarrow as pa

        ids = self._run_ids
        if isinstance(ids, (pa.Array, pa.ChunkedArray)):
            return ids
        return pa.array(
            ids if not isinstance(ids, (set, frozenset)) else list(ids), type=pa.string()
        )

    # filters ----------------------------------------------------------------------
    def _clauses(self) -> list[Clause]:
        from .scan import Term, query_clauses

        clauses: list[Clause] = []
        for key, value in self._equals.items():
            if key == "experiment" and self._label:
                continue
            col = self._raw(key, f"filter({key}=...)")
            if key == "status" or col == "status":
                vals = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
                bad = [v for v in vals if v not in _STATUSES]
                if bad:
                    raise ResultsError(
                        f"filter(status=...): unknown status {bad[0]!r}; runs are "
                        f"{' or '.join(repr(s) for s in _STATUSES)}"
                    )
            if isinstance(value, (list, tuple, set, frozenset)):
                clauses.append((Term(col, "in", list(value)),))
            elif value is None:
                clauses.append((Term(col, "null", True),))
            else:
                clauses.append((Term(col, "==", value),))
        lookup = self._lookup()
        for q, env in self._queries:
            clauses += query_clauses(q, lookup, env)
        return clauses

    def _query_columns(self) -> list[str]:
        """Raw columns a pandas query may refer to."""
        lookup = self._lookup()
        out: list[str] = []
        for q, _env in self._queries:
            for m in re.finditer(r"`([^`]*)`|([A-Za-z_][A-Za-z_0-9]*)", q):
                name = m.group(1) if m.group(1) is not None else m.group(2)
                if name in lookup:
                    out.append(lookup[name])
        return out

    def _apply_queries(self, table: pa.Table) -> pa.Table:
        import pyarrow as pa

        if not self._queries or table.num_rows == 0:
            return table
        names = self._names
        cols = [c for c in dict.fromkeys(self._query_columns()) if c in table.column_names]
        df = table.select(cols or table.column_names).to_pandas()
        df = df.rename(columns={c: names.get(c, c) for c in df.columns})
        for q, env in self._queries:
            try:
                mask = df.eval(
                    q, local_dict=env.get("locals", {}), global_dict=env.get("globals", {})
                )
            except Exception as exc:
                if "is not defined" in str(exc) or isinstance(exc, (NameError, KeyError)):
                    visible = [u for r, u in names.items() if r not in _HIDDEN]
                    raise ResultsError(
                        f"query({q!r}): {exc}; columns are {sorted(visible)} (quote names "
                        "with dots in backticks: `opt.lr` > 0.1)"
                    ) from exc
                raise
            if not hasattr(mask, "dtype") or mask.dtype.kind != "b":
                raise ResultsError(
                    f"query({q!r}) is not a condition (it gives {mask.dtype} "
                    "values, not True/False)"
                )
            keep = mask.fillna(False).to_numpy(dtype=bool)
            df = df[keep]
            table = table.filter(pa.array(keep))
        return table

    # loading -----------------------------------------------------------------------
    def _read_columns(self, *, full: bool) -> list[str] | None:
        names = self._snapshot().schema.names
        if full:
            return None
        if self._columns is None:
            return [c for c in names if c not in _HIDDEN or c == "sweep"]
        want = [*self._columns, *_INTERNAL, *self._query_columns()]
        want += [c.column for cl in self._clauses() for c in cl]
        return [c for c in dict.fromkeys(want) if c in names]

    def _arrow(self, *, full: bool = False) -> pa.Table:
        """The selected records (raw column names) in table order; cached."""
        if full and self._full is not None:
            return self._full
        if not full and self._core is not None:
            return self._core
        if not full and self._full is not None:
            return self._full
        base = self._base
        if base is not None and (base._full is not None or (not full and base._core is not None)):
            from .scan import filter_exprs

            table = base._arrow(full=full)
            _push, exact = filter_exprs(self._clauses(), self._snapshot().schema)
            if exact is not None:
                table = table.filter(exact)
            want = self._equals.get("experiment")
            if want is not None and self._label:
                import pyarrow as pa
                import pyarrow.compute as pc

                allowed = list(want) if isinstance(want, (list, tuple, set, frozenset)) else [want]
                table = table.filter(
                    pc.is_in(
                        table.column("experiment"), value_set=pa.array(allowed, type=pa.string())
                    )
                )
        else:
            from .scan import read_eager

            table, snap = read_eager(
                self._pairs(),
                columns=self._read_columns(full=full),
                clauses=self._clauses(),
                run_ids=self._ids(),
                snap=self._snap,
            )
            self._snap = snap
        table = self._apply_queries(table)
        if full:
            self._full = table
        else:
            self._core = table
        return table

    def _derive(self, **changes: Any) -> Results:
        kw: dict[str, Any] = {
            "run_ids": self._run_ids,
            "equals": self._equals,
            "label_experiments": self._label,
            "queries": self._queries,
            "columns": self._columns,
        }
        kw.update(changes)
        loaded = self._core is not None or self._full is not None
        out = Results(self._stores, base=self if loaded else self._base, **kw)
        out._labels = self._labels
        if out._base is None and self._snap is not None:
            out._snap = self._snap  # the same snapshot of the store: read footers once
        return out

    def reload(self) -> Results:
        """The same selection read again from the store (new runs of a live sweep appear)."""
        out = Results(
            self._stores,
            run_ids=self._run_ids,
            equals=self._equals,
            label_experiments=self._label,
            queries=self._queries,
            columns=self._columns,
        )
        out._labels = self._labels
        return out

    # selection ----------------------------------------------------------------------
    def filter(self, **equals: Any) -> Results:
        """Runs whose params, metrics or columns equal the given values.

        A list (or tuple, set) means "is one of"; ``None`` means "is missing".
        Filters on params and status are pushed down to the Parquet reader.

        Examples
        --------
        >>> result.filter(n_samples=[1000, 10000], status="success")  # doctest: +SKIP
        >>> result.filter(**{"optimizer.lr": 0.01})  # nested params  # doctest: +SKIP
        """
        merged = {**self._equals, **equals}
        out = self._derive(equals=merged)
        out._clauses()  # validate names now, not at first use
        return out

    def query(self, expr: str) -> Results:
        """Runs for which a pandas query expression is true.

        Column names are the table's (quote dotted names in backticks); ``@name`` refers
        to a variable of the caller.  Simple comparisons on params and status joined by
        ``and`` are pushed down to the Parquet reader.

        Examples
        --------
        >>> result.query("lr > 0.01 and status == 'success'")  # doctest: +SKIP
        >>> result.query("`opt.lr` in [0.1, 0.3] or batch >= @big")  # doctest: +SKIP
        """
        if not isinstance(expr, str) or not expr.strip():
            raise ResultsError(
                f"query() takes a condition as text, such as "
                f"\"lr > 0.01 and status == 'success'\", got {expr!r}"
            )
        frame = sys._getframe(1)
        local: dict[str, Any] = {}
        for name in re.findall(r"@([A-Za-z_][A-Za-z_0-9]*)", expr):
            if name in frame.f_locals:
                local[name] = frame.f_locals[name]
            elif name in frame.f_globals:
                local[name] = frame.f_globals[name]
            else:
                raise ResultsError(
                    f"query({expr!r}): no variable named {name!r} where query() was called"
                )
        env = {"locals": local, "globals": {}}
        self._check_query_names(expr, local)
        return self._derive(queries=[*self._queries, (expr, env)])

    def _check_query_names(self, expr: str, local: dict[str, Any]) -> None:
        """Raise now, not at first use, when a query names a column the table lacks."""
        import pandas as pd

        empty = pd.DataFrame(
            {name: pd.Series([], dtype="float64") for name in dict.fromkeys(self._names.values())}
        )
        try:
            empty.eval(expr, local_dict=local, global_dict={})
        except Exception as exc:
            if "is not defined" in str(exc) or isinstance(exc, (NameError, KeyError)):
                missing = re.findall(r"'([^']+)' is not defined", str(exc))
                key = missing[0] if missing else expr
                visible = [u for r, u in self._names.items() if r not in _HIDDEN]
                raise ResultsError(
                    f"query({expr!r}): no column named {key!r}; " + _suggest(key, visible)
                ) from None
            # other problems (types, syntax) show with real data, as pandas reports them

    def select(self, *columns: str) -> Results:
        """The same runs with only these columns in tables, frames and exports.

        Examples
        --------
        >>> result.select("n_samples", "pi_estimate").to_pandas()  # doctest: +SKIP
        """
        if len(columns) == 1 and isinstance(columns[0], (list, tuple)):
            columns = tuple(columns[0])
        if not columns:
            raise ResultsError(
                "select() needs at least one column, e.g. result.select('lr', 'accuracy')"
            )
        raw = [self._raw(c, "select") for c in columns]
        return self._derive(columns=raw)

    @property
    def successful(self) -> Results:
        """Runs whose status is ``"success"``."""
        return self.filter(status="success")

    @property
    def failed(self) -> Results:
        """Runs that did not succeed (status ``"failed"`` or ``"timeout"``)."""
        return self.filter(status=["failed", "timeout"])

    # tables -----------------------------------------------------------------------
    def _output_columns(self, table: pa.Table, *, full: bool = False) -> list[str]:
        if self._columns is not None and not full:
            cols = list(self._columns)
            if "experiment" in table.column_names and "experiment" not in cols:
                cols = ["experiment", *cols]
            return [c for c in cols if c in table.column_names]
        order = _ordered(table.column_names, full=full)
        if not full:
            order = [c for c in order if c not in _HIDDEN]
        return order

    def to_pandas(self, *, full: bool = False) -> pd.DataFrame:
        """The runs as a pandas DataFrame: run_id, one column per param, status, metrics...

        ``full=True`` adds every stored column (params JSON, traceback, artifacts, logs...).
        """
        table = self._arrow(full=full)
        cols = self._output_columns(table, full=full)
        names = self._names
        df = table.select(cols).to_pandas()
        df.columns = [names.get(c, c) for c in cols]
        return df

    def table(self, as_dataframe: bool = False, *, max_rows: int = 60) -> Any:
        """The runs as printable text, or as a pandas DataFrame with ``as_dataframe=True``."""
        if as_dataframe:
            return self.to_pandas()
        table = self._arrow()
        if table.num_rows == 0:
            return "(no runs)"
        drop = {
            "seed",
            "started_at",
            "ended_at",
            "attempt",
            "retries",
            "error_type",
            "error_message",
        }
        cols = [
            c for c in self._output_columns(table) if c not in drop or self._columns is not None
        ]
        n = table.num_rows
        half = max_rows // 2
        shown = (
            table if n <= max_rows else pa_concat(table.slice(0, half), table.slice(n - half, half))
        )
        df = shown.select(cols).to_pandas()
        df.columns = [self._names.get(c, c) for c in cols]
        if "run_id" in df.columns:
            df["run_id"] = df["run_id"].str.slice(0, 8)
        text = df.to_string(index=False, float_format=lambda x: f"{x:.6g}")
        if n > max_rows:
            lines = text.splitlines()
            lines.insert(half + 1, f"... {n - 2 * half} more runs ...")
            text = "\n".join(lines)
        return text

    def to_csv(self, path: str | os.PathLike[str], **kwargs: Any) -> None:
        """Write the table (the ``to_pandas()`` columns) to a CSV file."""
        self.to_pandas().to_csv(path, index=False, **kwargs)

    def to_parquet(self, path: str | os.PathLike[str]) -> None:
        """Write the table (the ``to_pandas()`` columns, with their types) to one Parquet file."""
        import pyarrow.parquet as pq

        table = self._arrow()
        cols = self._output_columns(table)
        out = table.select(cols).rename_columns([self._names.get(c, c) for c in cols])
        pq.write_table(out, os.fspath(path))

    @property
    def frame(self) -> dd.DataFrame:
        """A lazy ``dask.dataframe.DataFrame`` of the selected runs (the ``to_pandas`` columns).

        Partitions are groups of Parquet row groups; row groups whose statistics rule out
        the filters are never read.  Integer and boolean columns use pandas' nullable
        dtypes, so runs without a param or metric hold ``<NA>``.  Row order is not kept
        across partitions; sort or use :meth:`to_pandas` for the table order.
        """
        from .scan import lazy_frame

        snap = self._snapshot()
        names = snap.schema.names
        full_order = _ordered(names, full=False)
        out = (
            list(self._columns)
            if self._columns is not None
            else [c for c in full_order if c not in _HIDDEN]
        )
        out = [c for c in out if c in names]
        extra = [c for c in self._query_columns() if c not in out]
        ddf = lazy_frame(
            snap,
            columns=out + extra,
            clauses=self._clauses(),
            run_ids=self._ids(),
            names=self._names,
        )
        for q, env in self._queries:
            ddf = ddf.query(q, local_dict=env.get("locals", {}), global_dict=env.get("globals", {}))
        if extra:
            keep = [self._names.get(c, c) for c in out]
            if "experiment" in ddf.columns:
                keep = ["experiment", *keep]
            ddf = ddf[keep]
        return ddf

    def metric_frame(self, name: str | None = None) -> dd.DataFrame:
        """Stepped metrics of the selected runs as a lazy Dask frame (long form).

        Columns ``run_id, name, step, value, time`` (``experiment`` first for several
        stores); one partition per metrics file, only the steps of each run's current
        record.  ``name=`` keeps one metric (filtered while reading).
        """
        from .metric_frame import metric_frame

        return metric_frame(self, name)

    @property
    def provenance(self) -> list[dict[str, Any]]:
        """One dict per sweep (``run()`` call) of the stores, oldest first.

        Each holds the sweep's options and counts, the operation's ``source_hash``, and
        ``provenance``: metalab, Python and package versions, platform, hostname, and the
        git commit and dirty flag of the repository holding the operation's source.
        """
        return [sweep for s in self._stores for sweep in s.read_sweeps()]

    # runs ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._arrow().num_rows)

    def __getitem__(self, i: int | str) -> Run:
        """The ``i``-th run (table order), or the run with a given run id (or id prefix)."""
        table = self._arrow(full=True)
        n = table.num_rows
        if isinstance(i, str):
            import pyarrow.compute as pc

            col = table.column("run_id")
            hits = pc.indices_nonzero(pc.starts_with(col, i)).to_pylist()
            if len(hits) != 1:
                raise ResultsError(
                    f"no run with id {i!r}"
                    if not hits
                    else f"{len(hits)} runs have ids starting with {i!r}; give more characters"
                )
            i = int(hits[0])
        if isinstance(i, bool) or not isinstance(i, int):
            raise ResultsError(f"index runs by position or run id, got {i!r}")
        if not -n <= i < n:
            raise IndexError(f"run index {i} out of range for {n} runs")
        row = table.slice(i % n, 1).to_pylist()[0]
        return Run(row, self._store_of(row))

    def __iter__(self) -> Iterator[Run]:
        for batch in self._arrow(full=True).to_batches(max_chunksize=4096):
            for row in batch.to_pylist():
                yield Run(row, self._store_of(row))

    def _store_of(self, row: dict[str, Any]) -> Store:
        if len(self._stores) == 1 or not self._label:
            return self._stores[0]
        name = row.get("experiment")
        for s in self._stores:
            if self._experiment_name(s) == name:
                return s
        return self._stores[0]

    # summaries ---------------------------------------------------------------------
    def _present(self, prefix: str) -> list[str]:
        table = self._arrow()
        cols = [c for c in table.column_names if c.startswith(prefix)]
        if self._columns is not None:
            cols = [c for c in cols if c in self._columns]
        return [self._names[c] for c in cols if table.column(c).null_count < table.num_rows]

    def metric_names(self) -> list[str]:
        """Table names of the scalar metrics some selected run has."""
        return self._present(METRIC_PREFIX)

    def param_names(self) -> list[str]:
        """Table names of the params some selected run has."""
        return self._present(PARAM_PREFIX)

    def summary(
        self,
        group_by: Sequence[str] | str | None = None,
        metrics: Sequence[str] | None = None,
        stats: Sequence[str] = ("mean", "std", "count"),
    ) -> pd.DataFrame:
        """Per-group statistics of each metric across replicates (successful runs only).

        Parameters
        ----------
        group_by
            Table columns to group by; default: every param.
        metrics
            Metrics to summarise; default: every scalar metric.
        stats
            Any of ``mean, std, count, min, max, median, sem, ci95`` (``ci95`` is the
            half-width of the 95% confidence interval of the mean, Student t).

        Returns
        -------
        pandas.DataFrame
            One row per group: the group columns, then ``<metric>_<stat>`` columns.
        """
        from .analysis import summarize

        return summarize(self, group_by=group_by, metrics=metrics, stats=stats)

    def display(
        self,
        group_by: Sequence[str] | str | None = None,
        metrics: Sequence[str] | None = None,
        stats: Sequence[str] = ("mean", "std", "count"),
    ) -> None:
        """Print :meth:`summary` as a readable table: one row per group, cells ``mean ± std (n)``.

        A table too wide for the terminal is split into one table per metric.
        """
        from .analysis import print_summary

        print_summary(
            self.summary(group_by=group_by, metrics=metrics, stats=stats),
            stats=stats,
            title=self._title(),
        )

    def series(self, metric: str | None = None) -> pd.DataFrame:
        """Stepped metrics of the selected runs, long form: run_id, params, name, step, value.

        Only the steps of each run's current record (its latest attempt) are included.
        """
        from .analysis import stepped

        return stepped(self, metric)

    def plot(
        self,
        x: str,
        y: str,
        *,
        hue: str | None = None,
        logx: bool = False,
        logy: bool = False,
        band: str | None = "ci95",
        errorbars: bool = False,
        ax: Any = None,
        path: str | os.PathLike[str] | None = None,
    ) -> Any:
        """Plot the mean of ``y`` against ``x`` across replicates, one line per ``hue``.

        The band (or error bars with ``errorbars=True``) is the 95% confidence interval
        of the mean (``band="ci95"``), ± one standard deviation (``"std"``) or ± the
        standard error (``"sem"``); ``band=None`` draws the means only.  Returns the
        matplotlib Axes; ``path=`` also saves the figure.  Needs ``metalab[plot]``.
        """
        from .plotting import plot_metric

        return plot_metric(
            self,
            x=x,
            y=y,
            hue=hue,
            logx=logx,
            logy=logy,
            band=band,
            errorbars=errorbars,
            ax=ax,
            path=path,
        )

    def plot_series(
        self,
        metric: str,
        *,
        hue: str | None = None,
        logx: bool = False,
        logy: bool = False,
        band: str | None = "ci95",
        ax: Any = None,
        path: str | os.PathLike[str] | None = None,
    ) -> Any:
        """Plot a stepped metric (a learning curve): mean over runs per step, per ``hue``.

        Returns the matplotlib Axes; ``path=`` also saves the figure.  Needs ``metalab[plot]``.
        """
        from .plotting import plot_steps

        return plot_steps(self, metric, hue=hue, logx=logx, logy=logy, band=band, ax=ax, path=path)

    # counts and reprs ----------------------------------------------------------------
    def _title(self) -> str:
        names = list(dict.fromkeys(self._experiment_name(s) for s in self._stores))
        return ", ".join(names)

    def counts(self) -> dict[str, int]:
        """Number of runs by status (``success``, ``failed``) and ``pending``."""
        import pyarrow.compute as pc

        table = self._arrow()
        out = {
            str(k): int(v)
            for k, v in (
                (d["values"], d["counts"])
                for d in pc.value_counts(table.column("status")).to_pylist()
            )
        }
        out = {"success": out.pop("success", 0), "failed": out.pop("failed", 0), **out}
        out["pending"] = self.pending
        return out

    @property
    def pending(self) -> int:
        """Runs planned but without a record (yet): running, queued or never run.

        For the results of ``metalab.run`` these are its plan's runs without a record;
        for a store, the runs the latest sweep set out to run and has not recorded.
        Filtered results count none.
        """
        import pyarrow.compute as pc

        if self._equals or self._queries:
            return 0
        table = self._arrow()
        if self._run_ids is not None:
            return max(0, len(self._run_ids) - table.num_rows)
        total = 0
        for s, label in self._pairs():
            sweeps = s.read_sweeps()
            if not sweeps:
                continue
            last = sweeps[-1]
            mine = table
            if label is not None:
                mine = table.filter(pc.equal(table.column("experiment"), label))
            done = int(pc.sum(pc.equal(mine.column("sweep"), last.get("sweep", ""))).as_py() or 0)
            total += max(0, int(last.get("to_run", 0)) - done)
        return total

    def _count_text(self) -> tuple[int, str]:
        c = self.counts()
        n = sum(v for k, v in c.items() if k != "pending")
        parts = [f"{c['success']} succeeded", f"{c['failed']} failed"]
        parts += [f"{v} {k}" for k, v in c.items() if k not in ("success", "failed", "pending")]
        parts.append(f"{c['pending']} pending")
        return n, ", ".join(parts)

    def __repr__(self) -> str:
        n, text = self._count_text()
        return f"<Results {self._title()}: {n} runs ({text})>"

    def _repr_html_(self, max_rows: int = 20) -> str:
        n, text = self._count_text()
        head = f"<p><b>Results</b> {html.escape(self._title())}: {n} runs ({html.escape(text)})</p>"
        if n == 0:
            return head
        table = self._arrow()
        cols = self._output_columns(table)
        df = table.slice(0, max_rows).select(cols).to_pandas()
        df.columns = [self._names.get(c, c) for c in cols]
        if "run_id" in df.columns:
            df["run_id"] = df["run_id"].str.slice(0, 8)
        body = df.to_html(index=False, float_format=lambda x: f"{x:.6g}", na_rep="", border=0)
        more = f"<p>... {n - max_rows} more runs</p>" if n > max_rows else ""
        return head + body + more


def pa_concat(*tables: pa.Table) -> pa.Table:
    import pyarrow as pa

    return pa.concat_tables(tables)


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
            k[len(METRIC_PREFIX) :]: v
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

    def _artifact_entry(self, name: str, format: str | None = None) -> dict[str, Any]:
        entries = [a for a in self.artifacts if a["name"] == name]
        if entries and format is not None:
            chosen = [a for a in entries if a["format"] == format]
            if not chosen:
                have = [a["format"] for a in entries]
                raise KeyError(
                    f"run {self.run_id[:8]}: artifact {name!r} has no format "
                    f"{format!r}; it was saved as {have}"
                )
            entries = chosen
        if not entries:
            known = sorted({a["name"] for a in self.artifacts})
            raise ResultsError(f"run {self.run_id[:8]} has no artifact {name!r}; it has {known}")
        return entries[0]

    def _entry_path(self, entry: dict[str, Any]) -> Path:
        from ..store.paths import artifact_file

        where = f"the record of run {self.run_id[:8]} in {self._store.root}"
        return artifact_file(self._store.root, self.run_id, entry.get("path"), where)

    def artifact_path(self, name: str, format: str | None = None) -> Path:
        """The file of an artifact inside the store (the first format unless ``format=``)."""
        return self._entry_path(self._artifact_entry(name, format))

    def artifact(self, name: str, *, format: str | None = None, allow_pickle: bool = False) -> Any:
        """Load an artifact, checking its sha256 first.

        Parameters
        ----------
        name
            The name given to ``capture.artifact`` or ``capture.figure``.
        format
            Which file of a figure saved in several formats (default: the first).
        allow_pickle
            Load a ``format="pickle"`` artifact (unpickling can run code from the file).

        Raises
        ------
        KeyError
            The run has no such artifact.
        ArtifactIntegrityError
            The file does not match the checksum recorded when it was written.
        UnsafePickleError
            It is a pickle and ``allow_pickle`` is False.
        """
        import errno

        from ..capture import _sha256_file
        from ..capture.serializers import load_artifact

        entry = self._artifact_entry(name, format)
        path = self._entry_path(entry)
        if not path.exists():
            raise StoreError(
                errno.ENOENT,
                f"artifact {name!r} of run {self.run_id[:8]}: the "
                f"file {path} is missing (deleted or moved after the run)",
                str(path),
            )
        digest = _sha256_file(path)
        if digest != entry["sha256"]:
            raise ArtifactIntegrityError(
                errno.EIO,
                f"artifact {name!r} of run {self.run_id[:8]} is damaged: sha256 {digest[:12]}... "
                f"does not match the recorded {entry['sha256'][:12]}...; the file {path} was "
                "changed or corrupted after the run wrote it. Delete or move that file and "
                "call metalab.run(exp) again: resume re-runs just the runs whose artifacts "
                "are missing",
                str(path),
            )
        return load_artifact(entry["format"], path, allow_pickle=allow_pickle)

    def metric_series(self, name: str) -> pd.Series:
        """A stepped metric of this run as a pandas Series indexed by step.

        Empty when the run recorded ``name`` without steps (or failed before any);
        :class:`~metalab.errors.ResultsError` when a successful run has no such metric.
        """
        import pandas as pd
        import pyarrow.dataset as ds

        from ..store import read_steps

        expr = (ds.field("run_id") == self.run_id) & (ds.field("name") == name)
        t = read_steps(self._store.layout, filter=expr).to_pandas()
        sweep = self._row.get("sweep")
        if sweep is not None and len(t):
            t = t[t["sweep"] == sweep]
        if t.empty and self.status == "success" and name not in self.metrics:
            raise ResultsError(
                f"run {self.run_id[:8]} has no metric {name!r}; its metrics are "
                f"{sorted(self.metrics)}"
            )
        # A step can sit in two files for a moment (journal being folded into Parquet).
        t = t.drop_duplicates(subset=["step", "time"]).sort_values(["step", "time"], kind="stable")
        return pd.Series(
            t["value"].to_numpy(dtype="float64"),
            index=pd.Index(t["step"].to_numpy(dtype="int64"), name="step"),
            name=name,
        )

    def __repr__(self) -> str:
        m = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in list(self.metrics.items())[:4]
        )
        return f"<Run {self.run_id[:8]} {self.status} params={self.params} {m}>"

    def _repr_html_(self) -> str:
        def rows(items: dict[str, Any]) -> str:
            return "".join(
                f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                f"<td style='text-align:left'>{html.escape(_short(v))}</td></tr>"
                for k, v in items.items()
            )

        head = {
            "run_id": self.run_id,
            "status": self.status,
            "replicate": self.replicate,
            "seed": self.seed,
            "attempt": self.attempt,
            "duration_s": f"{self.duration_s:.4g}",
        }
        parts = [
            f"<p><b>Run</b> {html.escape(self.run_id[:8])} ({html.escape(self.status)})</p><table>",
            rows(head),
        ]
        for title, items in (("params", _flat_params(self.params)), ("metrics", self.metrics)):
            if items:
                parts.append(f"<tr><td colspan='2'><b>{title}</b></td></tr>" + rows(items))
        err = self.error
        if err:
            parts.append(
                "<tr><td colspan='2'><b>error</b></td></tr>" + rows({err["type"]: err["message"]})
            )
        if self.artifacts:
            parts.append(
                "<tr><td colspan='2'><b>artifacts</b></td></tr>"
                + rows(
                    {
                        a["name"]: f"{a['format']}, {a.get('size', '?')} bytes"
                        for a in self.artifacts
                    }
                )
            )
        parts.append("</table>")
        return "".join(parts)


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    text = str(v)
    return text if len(text) <= 200 else text[:197] + "..."


def _flat_params(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, dict) and v:
            out.update(_flat_params(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def load_results(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> Results:
    """Open the results of one store, or of several stores side by side.

    With a list of stores, the table gets an ``experiment`` column (the experiment name,
    or the folder name when two stores hold the same experiment), so versions of an
    experiment compare side by side.  Rows are ordered by start time within each store.
    While a sweep is running, the runs it has completed so far are included.

    Examples
    --------
    >>> result = metalab.load_results("./runs/pi_mc")  # doctest: +SKIP
    >>> both = metalab.load_results(["./runs/v1", "./runs/v2"])  # doctest: +SKIP
    >>> both.summary(group_by=["experiment", "lr"])  # doctest: +SKIP
    """
    if isinstance(path, (str, os.PathLike)):
        return Results([Store.open(path)])
    stores = [Store.open(p) for p in path]
    if not stores:
        raise ResultsError("load_results() needs a store path or a non-empty list of them")
    out = Results(stores, label_experiments=True)
    names = [out._experiment_name(s) for s in stores]
    if len(set(names)) < len(names):  # same experiment in several stores: use folder names
        for s in stores:
            out._labels[id(s)] = s.root.name
        if len({s.root.name for s in stores}) < len(stores):
            for s in stores:
                out._labels[id(s)] = str(s.root)
    return out
