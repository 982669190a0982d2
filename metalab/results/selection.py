"""What a ``Results`` describes: stores, filters, queries, columns; read once and cached.

A :class:`Selection` is read on first use.  Filters on params and status are pushed
down to the Parquet reader (:mod:`metalab.results.query`); a selection derived from a
loaded one (``filter``, ``query``, ``select``, ``successful``) filters the parent's table
in memory instead.  Column names are raw record names (``params.lr``) everywhere here;
:attr:`Selection.names` maps them to table names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ResultsError
from ..store.records import (
    CONTEXT_FINGERPRINT,
    DEFINITION_COLUMNS,
    METRIC_PREFIX,
    PARAM_PREFIX,
    REPLICATE,
    RUN_ID,
    STATUS,
    STATUSES,
    SWEEP,
)
from .naming import (
    EXPERIMENT,
    HIDDEN,
    INTERNAL,
    TABLE_DROPPED,
    ordered,
    suggest,
    user_names,
    visible,
)
from .query import (
    Clause,
    Query,
    apply_queries,
    equals_clause,
    filter_exprs,
    query_clauses,
    query_names,
)

if TYPE_CHECKING:
    import pandas as pd

    from ..store import Store
    from .scan import Scan

__all__ = ["Selection"]

_MANY = (list, tuple, set, frozenset)


class Selection:
    """Which runs of which stores, with which columns; the records read on first use."""

    def __init__(
        self,
        stores: Sequence[Store],
        *,
        run_ids: Any = None,
        equals: dict[str, Any] | None = None,
        labelled: bool = False,
        queries: Sequence[Query] = (),
        columns: Sequence[str] | None = None,
        base: Selection | None = None,
        labels: dict[int, str] | None = None,
        fixed: Sequence[Clause] = (),
    ) -> None:
        self.stores = list(stores)
        self.run_ids = run_ids
        self.equals = dict(equals or {})
        self.labelled = labelled
        self.queries = list(queries)
        self.columns = list(columns) if columns is not None else None
        #: Clauses every derived selection keeps (the current definition's scope).
        self.fixed = list(fixed)
        self._base = base
        self._snap: Scan | None = None
        self._core: pa.Table | None = None
        self._full: pa.Table | None = None
        self._status: pa.Table | None = None
        self._stepped: dict[str, str] | None = None
        self._labels: dict[int, str] = labels if labels is not None else {}
        if labelled and labels is None:
            self._label_stores()

    # stores and names ---------------------------------------------------------------
    def experiment_name(self, store: Store) -> str:
        """The label of a store's rows: its experiment's name (or folder, when shared)."""
        key = id(store)
        if key not in self._labels:
            self._labels[key] = str(store.read_manifest().get("experiment", store.root.name))
        return self._labels[key]

    def _label_stores(self) -> None:
        names = [self.experiment_name(s) for s in self.stores]
        if len(set(names)) < len(names):  # same experiment in several stores: folder names
            for s in self.stores:
                self._labels[id(s)] = s.root.name
            if len({s.root.name for s in self.stores}) < len(self.stores):
                for s in self.stores:
                    self._labels[id(s)] = str(s.root)

    def title(self) -> str:
        """The experiment names of the stores, comma-separated."""
        return ", ".join(dict.fromkeys(self.experiment_name(s) for s in self.stores))

    def pairs(self) -> list[tuple[Store, str | None]]:
        """(store, label) of every store the selection reads (label None: one store)."""
        pairs = [(s, self.experiment_name(s) if self.labelled else None) for s in self.stores]
        want = self.equals.get(EXPERIMENT)
        if want is not None and self.labelled:
            allowed = set(want) if isinstance(want, _MANY) else {want}
            pairs = [p for p in pairs if p[1] in allowed]
        return pairs

    def store_of(self, row: dict[str, Any]) -> Store:
        """The store a record (a row of :meth:`arrow`) comes from."""
        if len(self.stores) == 1 or not self.labelled:
            return self.stores[0]
        for s in self.stores:
            if self.experiment_name(s) == row.get(EXPERIMENT):
                return s
        return self.stores[0]

    def snapshot(self) -> Scan:
        """The snapshot of the stores this selection reads (taken once)."""
        if self._snap is None:
            if self._base is not None:
                self._snap = self._base.snapshot()
            else:
                from .scan import scan

                self._snap = scan(self.pairs())
        return self._snap

    @property
    def names(self) -> dict[str, str]:
        """Raw column -> table name, for every column of the snapshot."""
        snap = self.snapshot()
        if not snap.names:
            snap.names = user_names(snap.schema.names)
            snap.names[EXPERIMENT] = EXPERIMENT
        return snap.names

    def lookup(self) -> dict[str, str]:
        """Every accepted spelling of a column (table name, raw name) -> raw name.

        A record column is also ``record.<name>`` (``record.seed``), a spelling no param
        or metric can take from it.
        """
        names = self.names
        out = {user: raw for raw, user in names.items()}  # table names first
        for raw in names:
            out.setdefault(raw, raw)
            if not raw.startswith((PARAM_PREFIX, METRIC_PREFIX)) and raw != EXPERIMENT:
                out.setdefault(f"record.{raw}", raw)
        return out

    def check_unambiguous(self, key: str, what: str) -> None:
        """Raise when ``key`` names a record column and a param or metric kept its prefix.

        A param called ``seed`` is shown as ``params.seed`` (``seed`` is the run's seed):
        ``filter(seed=1)`` would silently test the record's seed, so it says which to use.
        """
        names = self.names
        if key not in names or names[key] != key:
            return
        mine = [c for c in (f"{PARAM_PREFIX}{key}", f"{METRIC_PREFIX}{key}") if c in names]
        if mine:
            kind = "param" if mine[0].startswith(PARAM_PREFIX) else "metric"
            raise ResultsError(
                f"{what}: {key!r} is ambiguous: your {kind} {key!r} is named {mine[0]!r} in "
                f"tables, because {key!r} is the record's own column; write {mine[0]!r} for "
                f"your {kind} or 'record.{key}' for the record's"
                + (f", e.g. filter(**{{{mine[0]!r}: ...}})" if what.startswith("filter") else ""),
                name=key,
                choices=[mine[0], f"record.{key}"],
            )

    def check_query(self, expr: str) -> None:
        """:meth:`check_unambiguous` for every name a pandas query refers to."""
        code = re.sub(r"'[^']*'|\"[^\"]*\"", "''", expr)  # names, not string literals
        for m in re.finditer(r"`([^`]*)`|([A-Za-z_][A-Za-z_0-9]*)", code):
            self.check_unambiguous(m.group(1) or m.group(2), f"query({expr!r})")

    def wanted_metrics(
        self,
        metrics: Sequence[str] | str | None,
        default: Sequence[str],
        keys: Sequence[str],
        reduce: str,
    ) -> list[tuple[str, str]]:
        """(table name, reduction) of each metric asked for (None: ``default`` but ``keys``).

        ``"loss[min]"`` asks for one metric's reduction; others get ``reduce``.
        """
        from .metric_frame import split_reduce

        if metrics is None:
            metrics = [m for m in default if m not in keys]
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        lookup = self.lookup()
        out = []
        for m in metrics:
            name, how = (m, None) if m in lookup else split_reduce(m)
            if name not in lookup:
                raise ResultsError(
                    f"metrics: no metric {m!r}; {suggest(m, default)}", name=m, choices=default
                )
            out.append((name, how or reduce))
        return out

    def check_plot_names(self, *, x: str, hue: str | None, y: Sequence[str]) -> None:
        """Raise an error that blames the argument (``x``, ``hue`` or ``y``) naming no column."""
        from .metric_frame import split_reduce

        lookup = self.lookup()
        for arg, name in [("x", x), ("hue", hue), *(("y", m) for m in y)]:
            if name is None:
                continue
            if arg == "y" and name not in lookup:
                name = split_reduce(name)[0]
            self.raw(name, f"plot({arg}={name!r})")

    def raw(self, key: str, what: str) -> str:
        """The raw column of a name given by the user, or an error that suggests one."""
        self.check_unambiguous(key, what)
        raw = self.lookup().get(key)
        if raw is None:
            raise ResultsError(
                f"{what}: no parameter, metric or column named {key!r}; "
                + suggest(key, visible(self.names)),
                name=key,
                choices=visible(self.names),
            )
        return raw

    # filters --------------------------------------------------------------------------
    def ids(self) -> pa.Array | None:
        """The run ids the selection is limited to, as an Arrow array (None: all)."""
        ids = self.run_ids
        if ids is None or isinstance(ids, (pa.Array, pa.ChunkedArray)):
            return ids
        return pa.array(list(ids) if isinstance(ids, (set, frozenset)) else ids, type=pa.string())

    def clauses(self) -> list[Clause]:
        """Every filter as clauses on raw columns (raises on unknown names or statuses)."""
        clauses: list[Clause] = list(self.fixed)
        for key, value in self.equals.items():
            if key == EXPERIMENT and self.labelled:
                continue
            col = self.raw(key, f"filter({key}=...)")
            if col == STATUS:
                bad = [v for v in (value if isinstance(value, _MANY) else [value])]
                bad = [v for v in bad if v not in STATUSES]
                if bad:
                    raise ResultsError(
                        f"filter(status=...): unknown status {bad[0]!r}; runs are "
                        f"{' or '.join(repr(s) for s in STATUSES)}"
                    )
            clauses.append(equals_clause(col, value))
        lookup = self.lookup()
        for q, env in self.queries:
            clauses += query_clauses(q, lookup, env)
        return clauses

    def query_columns(self) -> list[str]:
        """Raw columns a pandas query may refer to."""
        return query_names(self.queries, self.lookup())

    # loading ------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        """True once the records were read (derived selections then filter in memory)."""
        return self._core is not None or self._full is not None

    def _read_columns(self, *, full: bool) -> list[str] | None:
        names = self.snapshot().schema.names
        if full:
            return None
        if self.columns is None:
            return [c for c in names if c not in HIDDEN or c == SWEEP]
        want = [*self.columns, *INTERNAL, *self.query_columns()]
        want += [t.column for clause in self.clauses() for t in clause]
        return [c for c in dict.fromkeys(want) if c in names]

    def _from_base(self, base: Selection, *, full: bool) -> pa.Table:
        """This selection's rows of a loaded parent's table, filtered in memory."""
        table = base.arrow(full=full)
        _push, exact = filter_exprs(self.clauses(), self.snapshot().schema)
        if exact is not None:
            table = table.filter(exact)
        want = self.equals.get(EXPERIMENT)
        if want is not None and self.labelled:
            allowed = list(want) if isinstance(want, _MANY) else [want]
            keep = pc.is_in(table.column(EXPERIMENT), value_set=pa.array(allowed, pa.string()))
            table = table.filter(keep)
        return table

    def arrow(self, *, full: bool = False) -> pa.Table:
        """The selected records (raw column names) in table order; cached."""
        if full and self._full is not None:
            return self._full
        if not full and self._core is not None:
            return self._core
        if not full and self._full is not None:
            return self._full
        base = self._base
        if base is not None and (base._full is not None or (not full and base._core is not None)):
            table = self._from_base(base, full=full)
        else:
            from .scan import read_eager

            table, self._snap = read_eager(
                self.pairs(),
                columns=self._read_columns(full=full),
                clauses=self.clauses(),
                run_ids=self.ids(),
                snap=self._snap,
            )
        table = apply_queries(table, self.queries, self.names, self.lookup())
        if full:
            self._full = table
        else:
            self._core = table
        return table

    def status_table(self) -> pa.Table:
        """The records with at least the internal columns (status, sweep...); narrow if unread."""
        if self.loaded:
            return self.arrow()
        if self._status is None:
            self._status = self.derive(columns=[STATUS]).arrow()
        return self._status

    def derive(self, **changes: Any) -> Selection:
        """A selection with some of ``run_ids, equals, queries, columns`` changed."""
        kw: dict[str, Any] = {
            "run_ids": self.run_ids,
            "equals": self.equals,
            "queries": self.queries,
            "columns": self.columns,
        }
        kw.update(changes)
        out = Selection(
            self.stores,
            labelled=self.labelled,
            base=self if self.loaded else self._base,
            labels=self._labels,
            fixed=self.fixed,
            **kw,
        )
        if out._base is None and self._snap is not None:
            out._snap = self._snap  # the same snapshot of the store: read footers once
        return out

    def fresh(self) -> Selection:
        """The same description, not read yet (a new snapshot on first use)."""
        return Selection(
            self.stores,
            run_ids=self.run_ids,
            equals=self.equals,
            labelled=self.labelled,
            queries=self.queries,
            columns=self.columns,
            labels=self._labels,
            fixed=self.fixed,
        )

    def whole(self) -> Selection:
        """The same runs with every column (``select()`` undone)."""
        return self if self.columns is None else self.derive(columns=None)

    # what a table shows ---------------------------------------------------------------
    def output_columns(self, table: pa.Table, *, full: bool = False) -> list[str]:
        """Raw columns a table of these runs shows, in order."""
        if self.columns is not None and not full:
            cols = list(self.columns)
            if EXPERIMENT in table.column_names and EXPERIMENT not in cols:
                cols = [EXPERIMENT, *cols]
            return [c for c in cols if c in table.column_names]
        order = ordered(table.column_names, full=full)
        return order if full else [c for c in order if c not in HIDDEN]

    def present(self, prefix: str) -> list[str]:
        """Table names of the columns with ``prefix`` that some selected run has."""
        table = self.arrow()
        cols = [c for c in table.column_names if c.startswith(prefix)]
        if self.columns is not None:
            cols = [c for c in cols if c in self.columns]
        return [self.names[c] for c in cols if table.column(c).null_count < table.num_rows]

    def pending(self, table: pa.Table) -> int:
        """Runs planned but without a record in ``table`` (see ``Results.pending``)."""
        if self.equals or self.queries:
            return 0
        if self.run_ids is not None:
            return max(0, len(self.run_ids) - int(table.num_rows))
        total = 0
        for s, label in self.pairs():
            sweeps = s.read_sweeps()
            if not sweeps:
                continue
            last = sweeps[-1]
            mine = table
            if label is not None:
                mine = table.filter(pc.equal(table.column(EXPERIMENT), label))
            # A run of the latest sweep done by a sweep running beside it (another driver
            # on the store) has that sweep's record: it is done, not pending.
            beside = [
                str(w.get("sweep", ""))
                for w in sweeps
                if w is last or float(w.get("ended") or 1e300) >= float(last.get("started", 0))
            ]
            done = pc.sum(pc.is_in(mine.column(SWEEP), value_set=pa.array(beside))).as_py()
            total += max(0, int(last.get("to_run", 0)) - int(done or 0))
        return total

    def stepped(self) -> dict[str, str]:
        """Table name -> step name of each metric some selected run recorded with steps."""
        if self._stepped is None:
            from .metric_frame import stepped_names

            names = self.names
            found = stepped_names(self.runs_by_store([]))
            raw = {f"{METRIC_PREFIX}{n}": n for n in found}
            self._stepped = {names[c]: n for c, n in raw.items() if c in names}
        return self._stepped

    def runs_table(self, *, as_dataframe: bool, max_rows: int, reduce: str) -> Any:
        """``Results.table``: the runs as text, or a DataFrame; stepped metrics reduced."""
        from .._text import frame_text
        from .metric_frame import check_reduce

        check_reduce(reduce)
        table = self.arrow()
        n = table.num_rows
        if n == 0 and not as_dataframe:
            return "(no runs)"
        cols = self.output_columns(table)
        half = max_rows // 2
        if not as_dataframe:
            selected = self.columns is not None
            cols = [c for c in cols if selected or c not in TABLE_DROPPED]
            if not selected:  # runs of several definitions: show what tells them apart
                cols += [
                    c
                    for c in DEFINITION_COLUMNS
                    if c in table.column_names and len(pc.unique(table.column(c))) > 1
                ]
            if n > max_rows:
                table = pa.concat_tables([table.slice(0, half), table.slice(n - half, half)])
        df = table.select(cols).to_pandas()
        df.columns = [self.names.get(c, c) for c in cols]
        metrics = [self.names[c] for c in table.column_names if c.startswith(METRIC_PREFIX)]
        wanted = [(m, reduce) for m in metrics if m in df.columns]
        df, _ = self.with_reductions(df, wanted, table.column(RUN_ID))
        if as_dataframe:
            return df
        for short in (RUN_ID, CONTEXT_FINGERPRINT):
            if short in df.columns:
                df[short] = df[short].str.slice(0, 8)
        lines = frame_text(df).splitlines()
        if n > max_rows:
            lines.insert(half + 1, f"... {n - 2 * half} more runs ...")
        return "\n".join(lines)

    def param_columns(self) -> dict[str, str]:
        """Raw -> frame name of the params and replicate that ``metric_frame`` repeats.

        A param named like a column of the metric frame keeps its raw name.
        """
        from .metric_frame import COLUMNS

        lookup = self.lookup()
        out = {}
        for p in [*self.whole().present(PARAM_PREFIX), self.names.get(REPLICATE, REPLICATE)]:
            raw = lookup[p]
            out[raw] = raw if p in (*COLUMNS, EXPERIMENT) else p
        return out

    def with_reductions(
        self, frame: pd.DataFrame, wanted: Sequence[tuple[str, str]], run_ids: pa.ChunkedArray
    ) -> tuple[pd.DataFrame, list[str]]:
        """``frame`` with each stepped metric of ``wanted`` (table name, how) reduced.

        See :func:`metalab.results.analysis.with_reductions`; ``run_ids`` are the
        frame's rows.
        """
        from .analysis import with_reductions
        from .metric_frame import reduced_steps

        if not wanted:
            return frame, []
        stepped = self.stepped()
        if not any(m in stepped for m, _how in wanted):
            return frame, [m for m, _how in wanted]

        def reduced(names: list[str], how: str) -> pd.DataFrame:
            return reduced_steps(self.runs_by_store([]), names, how)

        return with_reductions(frame, wanted, stepped, reduced, run_ids.to_pylist())

    def runs_by_store(self, columns: Sequence[str]) -> list[tuple[Store, str | None, pa.Table]]:
        """(store, label, its selected records with ``columns``) for each store read."""
        table = self.whole().arrow()
        cols = [c for c in dict.fromkeys([RUN_ID, SWEEP, *columns]) if c in table.column_names]
        out = []
        for store, label in self.pairs():
            mine = table
            if label is not None and EXPERIMENT in table.column_names:
                mine = table.filter(pc.equal(table.column(EXPERIMENT), label))
            out.append((store, label, mine.select(cols)))
        return out
