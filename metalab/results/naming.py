"""Column names of the results table: raw record columns, table names, order, suggestions.

A record stores ``params.lr`` and ``metrics.acc``; the table shows ``lr`` and ``acc``.
:func:`user_names` decides every table name, :func:`ordered` the column order, and
:func:`suggest` the hint of an error about an unknown name.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from ..store.records import (
    ARTIFACTS,
    ATTEMPT,
    DEFINITION_COLUMNS,
    DURATION_S,
    ENDED_AT,
    ERROR_MESSAGE,
    ERROR_TYPE,
    HOST,
    LOGS,
    METRIC_PREFIX,
    PARAM_PREFIX,
    PARAMS,
    PID,
    REPLICATE,
    RETRIES,
    RUN_ID,
    SEED,
    STARTED_AT,
    STATUS,
    SWEEP,
    TRACEBACK,
    WORKER,
)

__all__ = [
    "EXPERIMENT",
    "HIDDEN",
    "INTERNAL",
    "PENDING",
    "TABLE_DROPPED",
    "ordered",
    "suggest",
    "user_names",
    "visible",
]

#: The column naming each row's store when several stores are read side by side.
EXPERIMENT = "experiment"
#: The key of ``Results.counts()`` for runs planned but not recorded (not a status).
PENDING = "pending"

#: Column order of the user-facing table (params and metrics are placed around these).
FRONT = [RUN_ID]
MIDDLE = [REPLICATE, SEED, STATUS]
BACK = [DURATION_S, STARTED_AT, ENDED_AT, ATTEMPT, RETRIES, ERROR_TYPE, ERROR_MESSAGE]
BACK += DEFINITION_COLUMNS
#: Bookkeeping columns left out of tables unless ``full=True``.
HIDDEN = frozenset({PARAMS, TRACEBACK, ARTIFACTS, LOGS, HOST, PID, WORKER, SWEEP})
#: Columns every loaded table keeps, whatever is selected (counts, order, dedupe).
INTERNAL = [RUN_ID, STATUS, REPLICATE, STARTED_AT, ENDED_AT, ATTEMPT, SWEEP]
#: Columns the printed ``Results.table()`` leaves out (unless they were selected).
#: (The definition columns are printed only when they differ between the runs shown.)
TABLE_DROPPED = frozenset(
    {SEED, STARTED_AT, ENDED_AT, ATTEMPT, RETRIES, ERROR_TYPE, ERROR_MESSAGE, *DEFINITION_COLUMNS}
)


def user_names(raw: Sequence[str]) -> dict[str, str]:
    """Map raw record columns to table names: ``params.lr`` -> ``lr``, ``metrics.acc`` -> ``acc``.

    A param or metric named like a core column (``status``, ``seed``, ...), or like a
    param claimed first, keeps its prefix.  One named like a bookkeeping column (``pid``,
    ``host``, ``worker``, ``logs``, ...) takes the bare name, and the bookkeeping column
    becomes ``record.<name>``: the user's names win where nothing important is hidden.

    >>> raw = ["run_id", "status", "host", "params.x", "metrics.x", "metrics.status"]
    >>> user_names([*raw, "metrics.host"])  # doctest: +NORMALIZE_WHITESPACE
    {'params.x': 'x', 'metrics.x': 'metrics.x', 'metrics.status': 'metrics.status',
     'metrics.host': 'host', 'run_id': 'run_id', 'status': 'status', 'host': 'record.host'}
    """
    internal = [c for c in raw if not c.startswith((PARAM_PREFIX, METRIC_PREFIX))]
    taken = {c for c in internal if c not in HIDDEN}
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
        out[c] = f"record.{c}" if c in HIDDEN and c in taken else c
    return out


def ordered(raw: Sequence[str], *, full: bool) -> list[str]:
    """Raw columns in table order: run_id, params, replicate/seed/status, metrics, timings.

    ``full=False`` keeps only those; ``full=True`` appends every other column.
    """
    params = [c for c in raw if c.startswith(PARAM_PREFIX)]
    metrics = [c for c in raw if c.startswith(METRIC_PREFIX)]
    order = [c for c in [EXPERIMENT, *FRONT] if c in raw] + params
    order += [c for c in MIDDLE if c in raw] + metrics + [c for c in BACK if c in raw]
    if full:
        order += [c for c in raw if c not in order]
    return order


def visible(names: dict[str, str]) -> list[str]:
    """The table names of ``names`` (raw -> table name) that tables show."""
    return [user for raw, user in names.items() if raw not in HIDDEN]


def suggest(key: str, names: Iterable[str]) -> str:
    """The hint of an error about an unknown name: the closest known name, or all of them."""
    choices = list(names)
    hint = difflib.get_close_matches(key, choices, n=1)
    return f"did you mean {hint[0]!r}?" if hint else f"columns are {sorted(choices)}"
