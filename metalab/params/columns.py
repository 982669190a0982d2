"""The results-table columns of a parameter space: one faithful type per column.

Every parameter becomes a ``params.<key>`` column (nested dicts as dotted keys, lists as
JSON text). An Arrow column holds one type, so a column mixing booleans with numbers
(``True`` and ``1``), or floats with integers beyond 2**53, would come back as floats:
such spaces are refused when the source is built, naming the column and the fix.
Sources compute the value kinds of their columns once (a grid from its axes, not from
its product), so the check is cheap even for million-run grids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ParamSpaceError

#: Column name -> kinds of the values it holds ("bool", "int", "bigint", "float", ...).
Kinds = dict[str, frozenset[str]]

#: Integers up to this size are exact in a float64 column.
EXACT_FLOAT_INT = 2**53


def value_kind(value: Any) -> str:
    """The kind of one normalized (JSON-like, non-dict) parameter value."""
    t = type(value)
    if t is bool:
        return "bool"
    if t is int:
        return "bigint" if abs(value) > EXACT_FLOAT_INT else "int"
    if t is float:
        return "float"
    if value is None:
        return "null"
    return "str" if t is str else "json"


def add_kinds(
    config: Mapping[str, Any], out: dict[str, set[str]], prefix: str = ""
) -> dict[str, set[str]]:
    """Add the column kinds of one normalized configuration to ``out``."""
    for k, v in config.items():
        key = prefix + k
        if type(v) is dict and v:
            add_kinds(v, out, key + ".")
        else:
            out.setdefault(key, set()).add("json" if type(v) is dict else value_kind(v))
    return out


def freeze(kinds: Mapping[str, Iterable[str]]) -> Kinds:
    """Immutable kinds, checked (see :func:`check`)."""
    return check({k: frozenset(v) for k, v in kinds.items()})


def merge(*parts: Kinds) -> Kinds:
    """The kinds of the concatenation or product of sources, checked."""
    out: dict[str, set[str]] = {}
    for part in parts:
        for k, v in part.items():
            out.setdefault(k, set()).update(v)
    return freeze(out)


def check(kinds: Kinds) -> Kinds:
    """Raise :class:`ParamSpaceError` for a column whose values cannot share one type."""
    numbers = {"int", "bigint", "float"}
    for key, ks in kinds.items():
        if "bool" in ks and ks & numbers:
            raise ParamSpaceError(
                f"parameter {key!r} is a boolean in some configurations and a number in "
                "others (e.g. True and 1); the results table holds one type per column and "
                "would turn both into floats. Use one type throughout (True/False, or 0/1)"
            )
        if "bigint" in ks and "float" in ks:
            raise ParamSpaceError(
                f"parameter {key!r} mixes floats with integers beyond 2**53, which a float "
                "column of the results table cannot hold exactly; make them all ints, or "
                "pass the large ones as strings"
            )
    return kinds
