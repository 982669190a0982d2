"""Filters of a selection: terms, their pyarrow expressions, and the pandas query compiler.

``filter(lr=0.1)`` and the simple parts of ``query("lr > 0.1 and status == 'success'")``
become :class:`Term` lists (a conjunction of clauses, each a disjunction of terms), which
:func:`filter_exprs` turns into two pyarrow expressions:

* the *pushdown* expression, handed to the Parquet reader, which skips row groups and
  files by their statistics.  A term on a column that can change between attempts of a
  run (status, metrics) is pushed down as ``term | attempt > 1``: every record that can
  supersede another is an attempt after the first, so the latest record of a run is
  always read and deduplication stays correct.
* the *exact* expression, applied after deduplication.

A query is always evaluated whole by pandas too (:func:`apply_queries`); pushing down
part of it only saves reading.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.dataset as ds

from ..errors import ResultsError
from ..store.records import ATTEMPT, PARAM_PREFIX, PARAMS, REPLICATE, RUN_ID, SEED
from .naming import suggest, visible

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "INVARIANT",
    "REL_TOL",
    "Clause",
    "Query",
    "Term",
    "apply_queries",
    "check_query_names",
    "clause_expr",
    "equals_clause",
    "filter_exprs",
    "prunes_file",
    "query_clauses",
    "query_names",
    "term_expr",
]

#: Columns that never differ between the records of one run id.
INVARIANT = frozenset({RUN_ID, REPLICATE, SEED, PARAMS})


#: Relative tolerance of ``filter(x=<float>)`` on a float column (``math.isclose``).
REL_TOL = 1e-9


@dataclass(frozen=True)
class Term:
    """One condition on one raw column: ``op`` is ==, !=, <, <=, >, >=, in, not in, null.

    ``close`` is ``==`` within :data:`REL_TOL` on a float column (exact on others).
    """

    column: str
    op: str
    value: Any = None


#: A filter is a conjunction of clauses; a clause is a disjunction of terms.
Clause = tuple[Term, ...]
#: A pandas query and the variables its ``@name`` references resolve to.
Query = tuple[str, dict[str, Any]]

_OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _is_number(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))


def _scalar(value: Any, typ: pa.DataType) -> pa.Scalar | None:
    """``value`` as a scalar comparable with a column of type ``typ``, or None."""
    try:
        s = pa.scalar(value)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return None
    if s.type == typ or (_is_number(s.type) and _is_number(typ)):
        return s  # numbers are compared numerically by Arrow
    if pa.types.is_string(typ) and not isinstance(value, str):
        value = str(value).lower() if isinstance(value, bool) else str(value)
        return pa.scalar(value, pa.string())
    try:
        return s.cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


def _isin_expr(term: Term, typ: pa.DataType) -> ds.Expression | None:
    f = ds.field(term.column)
    scalars = [_scalar(v, typ) for v in term.value]
    vals = [s for s in scalars if s is not None]
    if len(vals) < len(scalars):
        return None
    nonnull = [v.cast(typ) if v.type != typ else v for v in vals if v.is_valid]
    try:
        e = f.isin(pa.array([v.as_py() for v in nonnull], type=typ))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if len(nonnull) < len(vals):
        e = e | f.is_null()
    return ~e | f.is_null() if term.op == "not in" else e


def _is_float(value: Any) -> bool:
    return isinstance(value, float) or type(value).__name__ in ("float32", "float64")


def equals_clause(column: str, value: Any) -> Clause:
    """The clause of ``filter(column=value)``: a list means "is one of", None "is missing".

    A float matches within :data:`REL_TOL` (``np.logspace`` gives ``9.999999999999999e-06``
    where the user writes ``1e-5``).
    """
    if isinstance(value, (list, tuple, set, frozenset)):
        floats = [v for v in value if _is_float(v) and math.isfinite(v)]
        rest = [v for v in value if not (_is_float(v) and math.isfinite(v))]
        terms = [Term(column, "close", float(v)) for v in floats]
        return (*terms, Term(column, "in", rest)) if rest or not terms else tuple(terms)
    if value is None:
        return (Term(column, "null", True),)
    if _is_float(value) and math.isfinite(value):
        return (Term(column, "close", float(value)),)
    return (Term(column, "==", value),)


def _close_expr(term: Term, typ: pa.DataType) -> ds.Expression | None:
    f = ds.field(term.column)
    if not pa.types.is_floating(typ):
        s = _scalar(term.value, typ)
        return None if s is None else f == ds.scalar(s)
    v = float(term.value)
    tol = abs(v) * REL_TOL
    if tol == 0:
        return f == ds.scalar(v)
    return (f >= ds.scalar(v - tol)) & (f <= ds.scalar(v + tol))


def term_expr(term: Term, schema: pa.Schema) -> ds.Expression | None:
    """The Arrow expression of a term, or None when it cannot be expressed for this schema."""
    i = schema.get_field_index(term.column)
    if i < 0:
        return None
    typ = schema.field(i).type
    f = ds.field(term.column)
    if term.op == "null":
        return f.is_null() if term.value else ~f.is_null()
    if term.op in ("in", "not in"):
        return _isin_expr(term, typ)
    if term.op == "close":
        return _close_expr(term, typ)
    s = _scalar(term.value, typ)
    if s is None:
        return None
    e: ds.Expression = _OPS[term.op](f, ds.scalar(s))
    if term.op == "!=":  # pandas: NaN != x is True
        e = e | f.is_null()
    return e


def clause_expr(clause: Clause, schema: pa.Schema) -> ds.Expression | None:
    """The disjunction of a clause's terms, or None when one of them cannot be expressed."""
    exprs = [term_expr(t, schema) for t in clause]
    if any(e is None for e in exprs):
        return None
    return reduce(operator.or_, exprs)


def _invariant(clause: Clause) -> bool:
    return all(t.column in INVARIANT or t.column.startswith(PARAM_PREFIX) for t in clause)


def filter_exprs(
    clauses: Sequence[Clause], schema: pa.Schema, conflicts: set[str] | frozenset[str] = frozenset()
) -> tuple[ds.Expression | None, ds.Expression | None]:
    """(pushdown, exact) expressions of a conjunction of clauses over ``schema``.

    Clauses on ``conflicts`` (columns some file stores with another type) are not pushed
    down: the Parquet reader compares them before casting.
    """
    inv: list[ds.Expression] = []
    var: list[ds.Expression] = []
    exact: list[ds.Expression] = []
    for c in clauses:
        e = clause_expr(c, schema)
        if e is None:
            continue
        exact.append(e)
        if any(t.column in conflicts for t in c):
            continue
        (inv if _invariant(c) else var).append(e)
    push = list(inv)
    if var and ATTEMPT in schema.names:
        # The latest record of a run may not match while an older one does: read every
        # later attempt so that deduplication sees it (docs/design.md, Results).
        push.append(reduce(operator.and_, var) | (ds.field(ATTEMPT) > 1))
    return _all(push), _all(exact)


def _all(exprs: list[ds.Expression]) -> ds.Expression | None:
    return reduce(operator.and_, exprs) if exprs else None


def prunes_file(clauses: Sequence[Clause], names: set[str]) -> bool:
    """True when an invariant clause needs a column this file does not have (no match)."""
    for c in clauses:
        if _invariant(c) and all(
            t.column not in names and t.op not in ("!=", "not in", "null") for t in c
        ):
            return True
    return False


# ------------------------------------------------------------------ the query compiler
_AST_OPS = {
    "Eq": "==",
    "NotEq": "!=",
    "Lt": "<",
    "LtE": "<=",
    "Gt": ">",
    "GtE": ">=",
    "In": "in",
    "NotIn": "not in",
}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_MISSING = object()


class _Compiler:
    """Turns the parsed text of a pandas query into clauses (what it understands of it)."""

    def __init__(self, columns: dict[str, str], env: dict[str, Any], ticks: dict[str, str]):
        self.columns = columns
        self.env = env
        self.ticks = ticks

    def column(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.columns.get(self.ticks.get(node.id, node.id))
        return None

    def value(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            v = self.value(node.operand)
            return -v if isinstance(v, (int, float)) and not isinstance(v, bool) else _MISSING
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            vals = [self.value(e) for e in node.elts]
            return _MISSING if any(v is _MISSING for v in vals) else vals
        if isinstance(node, ast.Name) and node.id.startswith("__at_"):
            return self.env.get(node.id[5:-2], _MISSING)
        return _MISSING

    def terms(self, node: ast.AST) -> list[Term] | None:
        """A comparison (maybe chained) as a conjunction of terms, or None."""
        if not isinstance(node, ast.Compare):
            return None
        out = []
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            sym = _AST_OPS.get(type(op).__name__)
            col, val = self.column(left), self.value(right)
            if col is None:
                col, val = self.column(right), self.value(left)
                sym = _FLIP.get(sym or "")
            if sym is None or col is None or val is _MISSING:
                return None
            if sym in ("in", "not in"):
                if not isinstance(val, list):
                    return None
            elif isinstance(val, list) or val is None:
                return None
            out.append(Term(col, sym, val))
            left = right
        return out

    def clauses(self, node: ast.AST) -> list[Clause]:
        if (isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And)) or (
            isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd)
        ):
            parts = node.values if isinstance(node, ast.BoolOp) else [node.left, node.right]
            return [c for p in parts for c in self.clauses(p)]
        if (isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or)) or (
            isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)
        ):
            parts = node.values if isinstance(node, ast.BoolOp) else [node.left, node.right]
            alts = []
            for p in parts:
                t = self.terms(p)
                if t is None or len(t) != 1:
                    return []
                alts.append(t[0])
            return [tuple(alts)]
        t = self.terms(node)
        return [(x,) for x in t] if t else []


def query_clauses(query: str, columns: dict[str, str], env: dict[str, Any]) -> list[Clause]:
    """The part of a pandas query that can be pushed down, as clauses (may be empty).

    ``columns`` maps table names to raw record columns; ``env`` resolves ``@name``.
    Anything not understood is simply not pushed down (pandas evaluates the whole query).

    >>> query_clauses("lr > 0.1 and status == 'success'", {"lr": "params.lr"}, {})
    [(Term(column='params.lr', op='>', value=0.1),)]
    """
    ticks: dict[str, str] = {}

    def tick(m: re.Match[str]) -> str:
        key = f"__tick{len(ticks)}__"
        ticks[key] = m.group(1)
        return key

    text = re.sub(r"`([^`]*)`", tick, query)
    text = re.sub(r"@([A-Za-z_][A-Za-z_0-9]*)", r"__at_\1__", text)
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return []
    return _Compiler(columns, env, ticks).clauses(tree)


# ------------------------------------------------------------------- pandas evaluation
def query_names(queries: Sequence[Query], lookup: dict[str, str]) -> list[str]:
    """Raw columns the queries may refer to (``lookup``: every spelling -> raw name)."""
    out: list[str] = []
    for q, _env in queries:
        for m in re.finditer(r"`([^`]*)`|([A-Za-z_][A-Za-z_0-9]*)", q):
            name = m.group(1) if m.group(1) is not None else m.group(2)
            if name in lookup:
                out.append(lookup[name])
    return out


def _is_name_error(exc: Exception) -> bool:
    return "is not defined" in str(exc) or isinstance(exc, (NameError, KeyError))


def check_query_names(expr: str, local: dict[str, Any], names: dict[str, str]) -> None:
    """Raise now, not at first use, when a query names a column the table lacks."""
    import pandas as pd

    empty = pd.DataFrame(
        {name: pd.Series([], dtype="float64") for name in dict.fromkeys(names.values())}
    )
    try:
        empty.eval(expr, local_dict=local, global_dict={})
    except Exception as exc:
        if _is_name_error(exc):
            missing = re.findall(r"'([^']+)' is not defined", str(exc))
            key = missing[0] if missing else expr
            raise ResultsError(
                f"query({expr!r}): no column named {key!r}; " + suggest(key, visible(names)),
                name=key,
                choices=visible(names),
            ) from None
        # other problems (types, syntax) show with real data, as pandas reports them


def _mask(df: pd.DataFrame, expr: str, env: dict[str, Any], names: dict[str, str]) -> Any:
    try:
        mask = df.eval(expr, local_dict=env.get("locals", {}), global_dict=env.get("globals", {}))
    except Exception as exc:
        if _is_name_error(exc):
            raise ResultsError(
                f"query({expr!r}): {exc}; columns are {sorted(visible(names))} (quote names "
                "with dots in backticks: `opt.lr` > 0.1)"
            ) from exc
        raise
    if not hasattr(mask, "dtype") or mask.dtype.kind != "b":
        raise ResultsError(
            f"query({expr!r}) is not a condition (it gives {mask.dtype} values, not True/False)"
        )
    return mask.fillna(False).to_numpy(dtype=bool)


def apply_queries(
    table: pa.Table, queries: Sequence[Query], names: dict[str, str], lookup: dict[str, str]
) -> pa.Table:
    """The rows of ``table`` (raw column names) for which every query is true."""
    if not queries or table.num_rows == 0:
        return table
    cols = [c for c in dict.fromkeys(query_names(queries, lookup)) if c in table.column_names]
    df = table.select(cols or table.column_names).to_pandas()
    df = df.rename(columns={c: names.get(c, c) for c in df.columns})
    for q, env in queries:
        keep = _mask(df, q, env, names)
        df = df[keep]
        table = table.filter(pa.array(keep))
    return table
