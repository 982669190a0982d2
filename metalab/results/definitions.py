"""Definitions in a store: which runs belong to the current one, and never mixing them.

A run's *definition* is its experiment version, operation version and context
fingerprint (the record columns ``experiment_version``, ``operation_version``,
``context_fingerprint``).  Bumping ``version=`` or changing the context starts new run
ids in the same store: the runs of the old and the new definition answer different
questions and must never be pooled.

* ``load_results(path)`` shows the **current definition** (the one of the store's latest
  sweep): :func:`scope` finds the sweeps of other definitions, the selection leaves
  their records out (a pushed-down filter on the ``sweep`` column), and
  :class:`~metalab.errors.OtherDefinitionsWarning` says once how many runs that hides.
* Statistics (``summary``, ``display``, ``plot``, the report) over runs of several
  definitions group by the definition columns that vary (:func:`varying`), or raise
  (:func:`mixed_error`) where a figure cannot show them apart.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import OtherDefinitionsWarning, ResultsError
from ..store.manifest import definition_of, same_definition
from ..store.records import CONTEXT_FINGERPRINT, DEFINITION_COLUMNS, STATUS, SWEEP
from .query import Clause, Term

if TYPE_CHECKING:
    import pandas as pd

    from ..store import Store
    from .selection import Selection

__all__ = [
    "DEFINITIONS",
    "Scope",
    "check_definitions",
    "describe",
    "keep_current",
    "mixed_error",
    "refuse_mixed",
    "scope",
    "varying",
]

#: Accepted values of ``load_results(definitions=...)``.
DEFINITIONS = ("current", "all")


def describe(definition: dict[str, Any]) -> str:
    """``experiment_version '1', operation_version '0.2', context_fingerprint 44136fa3``."""
    parts = []
    for key in DEFINITION_COLUMNS:
        value = definition.get(key)
        if value is None:
            continue
        parts.append(f"{key} {value[:8]}" if key == CONTEXT_FINGERPRINT else f"{key} {value!r}")
    return ", ".join(parts) or "unknown definition"


@dataclass
class Scope:
    """The current definition of some stores and the sweeps of the other ones."""

    current: list[dict[str, str | None]] = field(default_factory=list)
    #: Sweep ids (over every store) whose definition is not their store's current one.
    other_sweeps: list[str] = field(default_factory=list)
    #: The other definitions, once each.
    others: list[dict[str, str | None]] = field(default_factory=list)

    @property
    def clause(self) -> Clause | None:
        """The filter keeping the current definition's records (None: nothing to hide).

        Records whose sweep file is missing are kept: nothing says they differ.
        """
        if not self.other_sweeps:
            return None
        return (Term(SWEEP, "not in", list(self.other_sweeps)),)


def scope(stores: Sequence[Store]) -> Scope:
    """The current definition of each store (its latest sweep's) and the other sweeps."""
    out = Scope()
    for store in stores:
        sweeps = [s for s in store.read_sweeps() if s.get("sweep")]
        if not sweeps:
            continue
        latest = definition_of(sweeps[-1])
        out.current.append(latest)
        for s in sweeps:
            if same_definition(s, latest):
                continue
            out.other_sweeps.append(str(s["sweep"]))
            d = definition_of(s)
            if not any(same_definition(d, o) for o in out.others):
                out.others.append(d)
    return out


def varying(frame: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The definition columns of ``frame`` not in ``keys`` that hold several values."""
    return [
        c
        for c in DEFINITION_COLUMNS
        if c in frame.columns and c not in keys and frame[c].nunique(dropna=False) > 1
    ]


def mixed_error(what: str, columns: Sequence[str], frame: pd.DataFrame) -> ResultsError:
    """The error of a figure asked to pool runs of several definitions."""
    col = columns[0]
    values = sorted(str(v) for v in frame[col].dropna().unique())
    shown = ", ".join(repr(v[:8] if col == CONTEXT_FINGERPRINT else v) for v in values)
    return ResultsError(
        f"{what}: these runs hold several definitions ({col} {shown}); their results "
        f"answer different questions and are never pooled. Plot one with "
        f".filter({col}={values[-1]!r}) or compare them with hue={col!r} "
        "(load_results(path) alone shows the current definition only)"
    )


def refuse_mixed(table: pa.Table, what: str, keys: Sequence[str]) -> None:
    """Raise when ``table``'s runs hold several definitions that ``keys`` do not tell apart."""
    cols = [c for c in DEFINITION_COLUMNS if c in table.column_names]
    if cols:
        frame = table.select(cols).to_pandas()
        apart = varying(frame, keys)
        if apart:
            raise mixed_error(what, apart, frame)


def check_definitions(definitions: object) -> None:
    """Refuse a ``load_results(definitions=...)`` value other than those accepted."""
    if definitions not in DEFINITIONS:
        raise ResultsError(
            f"load_results(definitions={definitions!r}): use 'current' (the runs of the "
            "latest sweep's definition, the default) or 'all' (every run, with its "
            "experiment_version, operation_version and context_fingerprint)"
        )


def keep_current(sel: Selection, path: Any) -> None:
    """Limit ``sel`` (not read yet) to each store's current definition; warn once how many
    runs of other definitions that leaves out, and how to see them."""
    found = scope(sel.stores)
    clause = found.clause
    if clause is None:
        return
    sel.fixed = [clause]
    hidden = sel.derive(columns=[STATUS])
    hidden.fixed = [(Term(SWEEP, "in", found.other_sweeps),)]
    n = hidden.arrow().num_rows
    if not n:
        return
    defs = "; ".join(describe(d) for d in found.others)
    where = repr(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else "paths"
    if hasattr(path, "location"):  # a Store
        where = repr(path.location)
    k = len(found.others)
    warning = OtherDefinitionsWarning(
        f"load_results shows the current definition ({describe(found.current[-1])}) and "
        f"leaves out {n} run{'s' if n != 1 else ''} of {k} other "
        f"definition{'s' if k != 1 else ''} ({defs}); "
        f"load_results({where}, definitions='all') returns every run with the columns "
        "experiment_version, operation_version and context_fingerprint"
    )
    warning.hidden, warning.definitions = n, k
    warning.current = describe(found.current[-1])
    warnings.warn(warning, stacklevel=4)  # at the caller of load_results
