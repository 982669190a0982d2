"""``Results``: the runs of a store as a table, a lazy Dask frame, summaries, plots and runs.

``Results`` is the user's view of a :class:`~metalab.results.selection.Selection` (which
stores, filters, columns; read on first use and cached).  Every way to look at runs reads
through it: the ``metalab`` command line and the HTML report too.  Statistics are
computed by :mod:`~metalab.results.analysis`, stepped metrics read by
:mod:`~metalab.results.metric_frame`, figures drawn by :mod:`~metalab.results.plotting`;
each is handed plain data (pandas frames, Arrow tables), never a ``Results``.
"""

from __future__ import annotations

import html
import os
import re
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ResultsError
from ..store import Store
from ..store.records import (
    DEFINITION_COLUMNS,
    FAILED,
    METRIC_PREFIX,
    PARAM_PREFIX,
    REPLICATE,
    RUN_ID,
    STATUS,
    STEP_NAME,
    SUCCESS,
    TIMEOUT,
)
from .naming import EXPERIMENT, HIDDEN, PENDING, ordered, suggest
from .query import check_query_names
from .run import Run
from .search_results import SearchResults
from .selection import Selection

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["Results", "ResultsError", "Run", "load_results"]

#: The record's status column, never a user's param or metric named ``status``.
_STATUS = f"record.{STATUS}"
#: The statistics ``summary`` and ``display`` compute by default.
DEFAULT_STATS = ("mean", "std", "count")


def _wrap(selection: Selection) -> Results:  # a Results over an existing selection
    out = Results.__new__(Results)
    out._sel = selection
    return out


def _to_pandas(sel: Selection, table: pa.Table, cols: list[str]) -> pd.DataFrame:
    """Raw columns ``cols`` of ``table`` as a DataFrame with table names."""
    df = table.select(cols).to_pandas()
    df.columns = [sel.names.get(c, c) for c in cols]
    return df


class Results(SearchResults):
    """The runs of one or more stores: tabular, filterable, lazily loaded.

    ``metalab.run`` returns the runs of the experiment it ran, in plan order;
    ``metalab.load_results`` returns every run of a store (or of several, with an
    ``experiment`` column), ordered by start time.  ``filter``, ``query`` and ``select``
    return new ``Results``; nothing is read until a table, frame or count is asked for.

    Examples
    --------
    >>> result = metalab.load_results("./runs/pi_mc")  # doctest: +SKIP
    >>> result.filter(n_samples=[1000, 10000]).summary(group_by="n_samples")  # doctest: +SKIP
    >>> result.query("pi_estimate > 3.1 and status == 'success'").to_pandas()  # doctest: +SKIP
    """

    def __init__(
        self, stores: Sequence[Store], *, run_ids: Any = None, label_experiments: bool = False
    ) -> None:
        """The runs of ``stores`` (use :func:`load_results` to open stores by path).

        ``run_ids`` keeps only those runs, in that order; ``label_experiments`` adds an
        ``experiment`` column naming each run's store.
        """
        self._sel = Selection(stores, run_ids=run_ids, labelled=label_experiments)

    def reload(self) -> Results:
        """The same selection read again from the store (new runs of a live sweep appear)."""
        return _wrap(self._sel.fresh())

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
        out = self._sel.derive(equals={**self._sel.equals, **equals})
        out.clauses()  # validate names now, not at first use
        return _wrap(out)

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
        frame = sys._getframe(1)  # the caller's variables answer its @names
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
        check_query_names(expr, local, self._sel.names)
        self._sel.check_query(expr)
        env = {"locals": local, "globals": {}}
        return _wrap(self._sel.derive(queries=[*self._sel.queries, (expr, env)]))

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
        raw = [self._sel.raw(c, "select") for c in columns]
        return _wrap(self._sel.derive(columns=raw))

    @property
    def successful(self) -> Results:
        """Runs whose status is ``"success"``."""
        return self.filter(**{_STATUS: SUCCESS})

    @property
    def failed(self) -> Results:
        """Runs that did not succeed (status ``"failed"`` or ``"timeout"``)."""
        return self.filter(**{_STATUS: [FAILED, TIMEOUT]})

    # tables -----------------------------------------------------------------------
    def to_pandas(self, *, full: bool = False) -> pd.DataFrame:
        """The runs as a pandas DataFrame: run_id, one column per param, status, metrics...

        ``full=True`` adds every stored column (params JSON, traceback, artifacts, logs...).
        """
        table = self._sel.arrow(full=full)
        return _to_pandas(self._sel, table, self._sel.output_columns(table, full=full))

    @overload
    def table(
        self, *, as_dataframe: Literal[False] = ..., max_rows: int = ..., reduce: str = ...
    ) -> str: ...
    @overload
    def table(
        self, *, as_dataframe: Literal[True], max_rows: int = ..., reduce: str = ...
    ) -> pd.DataFrame: ...
    @overload
    def table(
        self, *, as_dataframe: bool, max_rows: int = ..., reduce: str = ...
    ) -> str | pd.DataFrame: ...
    def table(
        self, *, as_dataframe: bool = False, max_rows: int = 60, reduce: str = "last"
    ) -> str | pd.DataFrame:
        """The runs as printable text, or as a pandas DataFrame with ``as_dataframe=True``.

        A stepped metric shows as one number per run, named for how it was reduced
        (``reduce=``: ``last``, ``min``, ``max`` or ``mean`` over its steps), e.g.
        ``loss[last]``.  The text shows the first and last ``max_rows // 2`` runs of a
        longer table, run ids shortened to 8 characters, without seeds, times and error
        columns (unless selected), and missing values as ``-``.  The DataFrame has the
        columns of :meth:`to_pandas`, stepped metrics reduced and renamed.
        """
        return self._sel.runs_table(as_dataframe=as_dataframe, max_rows=max_rows, reduce=reduce)

    def to_csv(self, path: str | os.PathLike[str], **kwargs: Any) -> None:
        """Write the table (the ``to_pandas()`` columns) to a CSV file.

        Keyword arguments go to :meth:`pandas.DataFrame.to_csv` (``sep=";"``, ...).
        """
        self.to_pandas().to_csv(path, index=False, **kwargs)

    def to_parquet(self, path: str | os.PathLike[str]) -> None:
        """Write the table (the ``to_pandas()`` columns, with their types) to one Parquet file."""
        import pyarrow.parquet as pq

        table = self._sel.arrow()
        cols = self._sel.output_columns(table)
        out = table.select(cols).rename_columns([self._sel.names.get(c, c) for c in cols])
        pq.write_table(out, os.fspath(path))

    @property
    def frame(self) -> dd.DataFrame:
        """A lazy ``dask.dataframe.DataFrame`` of the selected runs (the ``to_pandas`` columns).

        Partitions are groups of Parquet row groups; row groups whose statistics rule out
        the filters are never read.  Integer and boolean columns use pandas' nullable
        dtypes, so runs without a param or metric hold ``<NA>``.  Row order is not kept
        across partitions; sort or use :meth:`to_pandas` for the table order.
        """
        from .frame import lazy_frame

        sel = self._sel
        snap = sel.snapshot()
        names = snap.schema.names
        if sel.columns is not None:
            out = list(sel.columns)
        else:
            out = [c for c in ordered(names, full=False) if c not in HIDDEN]
        out = [c for c in out if c in names]
        extra = [c for c in sel.query_columns() if c not in out]
        ddf = lazy_frame(
            snap, columns=out + extra, clauses=sel.clauses(), run_ids=sel.ids(), names=sel.names
        )
        for q, env in sel.queries:
            ddf = ddf.query(q, local_dict=env.get("locals", {}), global_dict=env.get("globals", {}))
        if extra:
            keep = [sel.names.get(c, c) for c in out]
            if EXPERIMENT in ddf.columns:
                keep = [EXPERIMENT, *keep]
            ddf = ddf[keep]
        return ddf

    def metric_frame(self, name: str | None = None, *, params: bool = False) -> dd.DataFrame:
        """Stepped metrics of the selected runs as a lazy Dask frame (long form).

        Columns ``run_id, name, step, value, time`` (``experiment`` first for several
        stores); one partition per metrics file, only the steps of each run's current
        record.  ``name=`` keeps one metric (filtered while reading).  ``params=True``
        adds each run's params and ``replicate`` after ``run_id`` (table names; a param
        named ``name``, ``step``, ``value`` or ``time`` keeps its ``params.`` prefix), so
        per-parameter, per-step analysis needs no join.
        """
        from .metric_frame import metric_frame

        extra = self._sel.param_columns() if params else {}
        return metric_frame(self._sel.runs_by_store(list(extra)), name=name, extra=extra)

    @property
    def provenance(self) -> list[dict[str, Any]]:
        """One dict per sweep (``run()`` call) of the stores, oldest first.

        Each holds the sweep's options and counts, the operation's ``source_hash``, and
        ``provenance``: metalab, Python and package versions, platform, hostname, and the
        git commit and dirty flag of the repository holding the operation's source.
        """
        return [sweep for s in self._sel.stores for sweep in s.read_sweeps()]

    def __len__(self) -> int:
        return int(self._sel.arrow().num_rows)

    def __getitem__(self, i: int | str) -> Run:
        """The ``i``-th run (table order), or the run with a given run id (or id prefix)."""
        table = self._sel.arrow(full=True)
        n = table.num_rows
        if isinstance(i, str):
            hits = pc.indices_nonzero(pc.starts_with(table.column(RUN_ID), i)).to_pylist()
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
            raise ResultsError(f"run index {i} out of range for {n} runs")
        row = table.slice(i % n, 1).to_pylist()[0]
        return Run(row, self._sel.store_of(row))

    def __iter__(self) -> Iterator[Run]:
        """The runs in table order."""
        for batch in self._sel.arrow(full=True).to_batches(max_chunksize=4096):
            for row in batch.to_pylist():
                yield Run(row, self._sel.store_of(row))

    # summaries ---------------------------------------------------------------------
    def metric_names(self) -> list[str]:
        """Table names of the scalar metrics some selected run has."""
        return self._sel.present(METRIC_PREFIX)

    def param_names(self) -> list[str]:
        """Table names of the params some selected run has."""
        return self._sel.present(PARAM_PREFIX)

    def _group_keys(self, group_by: Sequence[str] | str | None) -> list[str]:
        if group_by is None:
            return self.successful.param_names()
        keys = [group_by] if isinstance(group_by, str) else list(group_by)
        lookup = self._sel.lookup()
        for g in keys:
            self._sel.check_unambiguous(g, f"group_by={g!r}")
            if g not in lookup:
                raise ResultsError(f"group_by: no column {g!r}; {suggest(g, self.param_names())}")
        return keys

    def summary(
        self,
        group_by: Sequence[str] | str | None = None,
        *,
        metrics: Sequence[str] | str | None = None,
        stats: Sequence[str] | str = DEFAULT_STATS,
        reduce: str = "last",
    ) -> pd.DataFrame:
        """Per-group statistics of each metric across replicates (successful runs only).

        Parameters
        ----------
        group_by
            Table columns to group by; default: every param.
        metrics
            Metrics to summarise; default: every scalar metric.  ``"loss[min]"`` picks
            the reduction of one stepped metric.
        stats
            Any of ``mean, std, count, min, max, median, sem, ci95`` (``ci95`` is the
            half-width of the 95% confidence interval of the mean, Student t).
        reduce
            How a stepped metric becomes one number per run: ``last`` (the value the
            run recorded last), ``min``, ``max`` or ``mean`` over its steps.  Its
            columns say which: ``loss[last]_mean``.

        Returns
        -------
        pandas.DataFrame
            One row per group: the group columns, then ``<metric>_<stat>`` columns.
            ``attrs["metalab"]["left_out"]`` counts the runs left out by status.
        """
        from .analysis import check_stats, summarize
        from .definitions import varying
        from .metric_frame import check_reduce

        stats = check_stats(stats)
        check_reduce(reduce)
        whole = _wrap(self._sel.whole())
        keys = whole._group_keys(group_by)
        wanted = whole._sel.wanted_metrics(metrics, whole.metric_names(), keys, reduce)
        succ = whole.successful._sel
        lookup = whole._sel.lookup()
        raw = list(dict.fromkeys(lookup[c] for c in [*keys, *(m for m, _ in wanted)]))
        defs = [c for c in DEFINITION_COLUMNS if c in lookup and lookup[c] not in raw]
        table = succ.arrow()
        frame = _to_pandas(succ, table, [*raw, *(lookup[c] for c in defs)])
        frame, names = succ.with_reductions(frame, wanted, table.column(RUN_ID))
        # Runs of different definitions are never pooled: group by what tells them apart.
        apart = varying(frame, keys)
        frame = frame.drop(columns=[c for c in defs if c not in apart])
        out = summarize(frame, keys=[*apart, *keys], metrics=names, stats=stats)
        left = {k: v for k, v in whole.counts().items() if k not in (SUCCESS, PENDING) and v}
        out.attrs["metalab"]["left_out"] = left
        return out

    def display(
        self,
        group_by: Sequence[str] | str | None = None,
        *,
        metrics: Sequence[str] | str | None = None,
        stats: Sequence[str] | str = DEFAULT_STATS,
        reduce: str = "last",
    ) -> None:
        """Print :meth:`summary` as a readable table: one row per group, cells ``mean ± std (n)``.

        A table too wide for the terminal is split into one table per metric; a line
        under it counts the failed runs left out.
        """
        from .analysis import check_stats, print_summary

        summary = self.summary(group_by, metrics=metrics, stats=stats, reduce=reduce)
        print_summary(summary, stats=check_stats(stats), title=self._sel.title())

    def series(self, metric: str | None = None) -> pd.DataFrame:
        """Stepped metrics of the selected runs, long form: run_id, params, name, step, value.

        Only the steps of each run's current record (its latest attempt) are included.
        """
        from .metric_frame import series_table

        sel = self._sel.whole()
        table = sel.arrow()
        params = [
            c
            for c in table.column_names
            if c.startswith(PARAM_PREFIX) and table.column(c).null_count < table.num_rows
        ]
        label = [EXPERIMENT] if EXPERIMENT in table.column_names else []
        defs = [
            c
            for c in DEFINITION_COLUMNS
            if c in table.column_names and len(pc.unique(table.column(c))) > 1
        ]
        runs = sel.runs_by_store([*label, *params, *defs, REPLICATE])
        return series_table(runs, names=sel.names, metric=metric)

    def plot(
        self,
        x: str,
        y: str | Sequence[str],
        *,
        hue: str | None = None,
        label: str | Sequence[str] | None = None,
        logx: bool = False,
        logy: bool = False,
        band: str | None = "ci95",
        errorbars: bool = False,
        reduce: str = "last",
        ax: Axes | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> Axes:
        """Plot the mean of ``y`` against ``x`` across replicates, one line per ``hue``.

        ``y`` may list several metrics for one axes; ``label`` names them in the legend
        (default: their names), which lists every labelled line of ``ax``.  The band
        (or bars, ``errorbars=True``) is ``"ci95"`` (95% CI of the mean), ``"std"``,
        ``"sem"`` or None.  ``reduce`` as in :meth:`summary`.  Returns the matplotlib
        Axes; ``path=`` also saves the figure.  Needs ``metalab[plot]``.
        """
        from .plotting import check_band, plot_labels, plot_metric

        check_band(band)
        ys = [y] if isinstance(y, str) else list(y)
        self._sel.check_plot_names(x=x, hue=hue, y=ys)
        names = plot_labels(ys, label)
        keys = [hue, x] if hue is not None else [x]
        stats = ("mean", "count", band) if band is not None else ("mean", "count")
        summary = self.summary(keys, metrics=ys, stats=stats, reduce=reduce)
        apart = [c for c in summary.attrs["metalab"]["group_by"] if c not in keys]
        if apart:  # one line per hue value would pool runs of several definitions
            from .definitions import mixed_error

            raise mixed_error("plot", apart, summary)
        return plot_metric(
            summary,
            x=x,
            y=summary.attrs["metalab"]["metrics"],
            labels=names,
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
        ax: Axes | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> Axes:
        """Plot a stepped metric (a learning curve): mean over runs per step, per ``hue``.

        Returns the matplotlib Axes; ``path=`` also saves the figure.  Needs ``metalab[plot]``.
        """
        from .definitions import refuse_mixed
        from .plotting import check_band, no_stepped_metric, plot_steps

        check_band(band)
        succ = self.successful
        refuse_mixed(self._sel.whole().arrow(), "plot_series", [hue] if hue else [])
        series = succ.series(metric)
        if series.empty:
            raise no_stepped_metric(metric, sorted(set(succ.series()[STEP_NAME].tolist())))
        return plot_steps(
            series, metric, hue=hue, logx=logx, logy=logy, band=band, ax=ax, path=path
        )

    # counts and reprs ----------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Number of runs by status and ``pending``: the one place runs are counted.

        Keys in order: ``success``, ``failed`` (always), ``timeout`` and any other status
        present, then ``pending`` (see :attr:`pending`).
        """
        table = self._sel.status_table()
        found = {
            str(d["values"]): int(d["counts"])
            for d in pc.value_counts(table.column(STATUS)).to_pylist()
        }
        out = {SUCCESS: found.pop(SUCCESS, 0), FAILED: found.pop(FAILED, 0)}
        if TIMEOUT in found:
            out[TIMEOUT] = found.pop(TIMEOUT)
        out.update(sorted(found.items()))
        out[PENDING] = self._sel.pending(table)
        return out

    @property
    def pending(self) -> int:
        """Runs planned but without a record (yet): running, queued or never run.

        For the results of ``metalab.run`` these are its plan's runs without a record;
        for a store, the runs the latest sweep set out to run and has not recorded.
        Filtered results count none.
        """
        return self._sel.pending(self._sel.status_table())

    def _count_text(self) -> tuple[int, str]:
        c = self.counts()
        n = sum(v for k, v in c.items() if k != PENDING)
        parts = [f"{c[SUCCESS]} succeeded", f"{c[FAILED]} failed"]
        parts += [f"{v} {k}" for k, v in c.items() if k not in (SUCCESS, FAILED, PENDING)]
        parts.append(f"{c[PENDING]} pending")
        return n, ", ".join(parts)

    def __repr__(self) -> str:
        n, text = self._count_text()
        return f"<Results {self._sel.title()}: {n} runs ({text})>"

    def _repr_html_(self, max_rows: int = 20) -> str:
        table = self._sel.arrow()  # first: the counts then come from this table
        n, text = self._count_text()
        title = html.escape(self._sel.title())
        head = f"<p><b>Results</b> {title}: {n} runs ({html.escape(text)})</p>"
        if n == 0:
            return head
        df = _to_pandas(self._sel, table.slice(0, max_rows), self._sel.output_columns(table))
        if RUN_ID in df.columns:
            df[RUN_ID] = df[RUN_ID].str.slice(0, 8)
        body: str = df.to_html(index=False, float_format=lambda x: f"{x:.6g}", na_rep="-", border=0)
        more = f"<p>... {n - max_rows} more runs</p>" if n > max_rows else ""
        return head + body + more


def load_results(
    path: str | os.PathLike[str] | Store | Sequence[str | os.PathLike[str] | Store],
    *,
    definitions: str = "current",
    storage_options: dict[str, Any] | None = None,
) -> Results:
    """Open the results of one store, or of several stores side by side.

    With a list of stores, the table gets an ``experiment`` column (the experiment name,
    or the folder name when two stores hold the same experiment), so versions of an
    experiment compare side by side.  Rows are ordered by start time within each store.
    While a sweep is running, the runs it has completed so far are included.

    A store holds runs of several *definitions* when the experiment's or operation's
    ``version=`` or the context changed between sweeps.  ``definitions="current"``
    (default) shows the runs of each store's current definition (that of its latest
    sweep) and warns once (:class:`~metalab.OtherDefinitionsWarning`) how many runs of
    other definitions it left out; ``definitions="all"`` returns every run, told apart by
    the columns ``experiment_version``, ``operation_version`` and ``context_fingerprint``
    (statistics then group by the ones that differ).  A store on object storage is a URL
    (``s3://bucket/prefix``; ``storage_options`` go to its fsspec filesystem).

    Examples
    --------
    >>> result = metalab.load_results("./runs/pi_mc")  # doctest: +SKIP
    >>> every = metalab.load_results("./runs/pi_mc", definitions="all")  # doctest: +SKIP
    >>> both = metalab.load_results(["./runs/v1", "./runs/v2"])  # doctest: +SKIP
    """
    from .definitions import check_definitions, keep_current

    check_definitions(definitions)
    labelled = not isinstance(path, (str, os.PathLike, Store))
    paths: list[Any] = list(path) if labelled else [path]  # type: ignore[arg-type]
    stores = [Store.open(p, storage_options=storage_options, reading=True) for p in paths]
    if not stores:
        raise ResultsError("load_results() needs a store path or a non-empty list of them")
    results = Results(stores, label_experiments=labelled)
    if definitions == "current":
        keep_current(results._sel, path)
    return results
