"""Run records as Arrow tables: built column by column, one table per partition.

A run's outcome travels as a small list (also one line of the journal)::

    [run_id, status, started_us, ended_us, {metric: value}, extra | None]

Times are integer microseconds since the epoch (``now_us()``): integers encode to JSON
about twice as fast as floats.  :func:`error_outcome` builds the outcome of a run that
did not succeed, wherever that is decided (an exception, a timeout, a dead process).

``extra`` holds ``error``, ``steps``, ``artifacts``, ``logs`` and ``retries`` when present.
"""

from __future__ import annotations

import json
import operator
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from .layout import SCHEMA_VERSION
from .ledger import with_ledger

PARAM_PREFIX = "params."
METRIC_PREFIX = "metrics."

# Record column names (docs/store-format.md), one constant each for the readers.
RUN_ID = "run_id"
STATUS = "status"
ATTEMPT = "attempt"
RETRIES = "retries"
REPLICATE = "replicate"
SEED = "seed"
PARAMS = "params"
STARTED_AT = "started_at"
ENDED_AT = "ended_at"
DURATION_S = "duration_s"
ERROR_TYPE = "error_type"
ERROR_MESSAGE = "error_message"
TRACEBACK = "traceback"
ARTIFACTS = "artifacts"
LOGS = "logs"
HOST = "host"
PID = "pid"
WORKER = "worker"
SWEEP = "sweep"

#: Footer key: b"1" when every run id of the file is distinct (see ``results/frame.py``).
DISTINCT_KEY = b"metalab.distinct_run_ids"


def distinct_flag(table: pa.Table) -> dict[bytes, bytes]:
    """The footer entry telling whether the table's run ids are all distinct (and present)."""
    import pyarrow.compute as pc

    if RUN_ID not in table.column_names:
        return {}
    ids = table.column(RUN_ID)
    distinct = pc.count_distinct(ids).as_py() == len(ids)  # nulls are not counted
    return {DISTINCT_KEY: b"1" if distinct else b"0"}


# The run's definition (identical for every run of one sweep; part of its run id).
EXPERIMENT_VERSION = "experiment_version"
OPERATION_VERSION = "operation_version"
CONTEXT_FINGERPRINT = "context_fingerprint"
#: What defines a run besides its params and seed: records of different definitions
#: are different experiments and are never aggregated together.
DEFINITION_COLUMNS = (EXPERIMENT_VERSION, OPERATION_VERSION, CONTEXT_FINGERPRINT)
# Columns of the stepped-metrics table (STEP_SCHEMA) besides run_id and sweep.
STEP_NAME = "name"
STEP = "step"
STEP_VALUE = "value"
STEP_TIME = "time"

#: Statuses of a run record: it succeeded, raised, overran ``timeout=``, was stopped
#: early by a search's pruner (``capture.should_stop()``; its metrics are kept), or
#: checkpointed and returned when ``capture.checkpoint_due()`` said so (requeued: not
#: done, not failed; it runs again from its checkpoint, in the sweep or on resume).
SUCCESS = "success"
FAILED = "failed"
TIMEOUT = "timeout"
PRUNED = "pruned"
REQUEUED = "requeued"
STATUSES = (SUCCESS, FAILED, TIMEOUT, PRUNED, REQUEUED)
#: Column of a search's trial number (records of ``metalab.optimize`` runs).
TRIAL = "trial"

# Low-cardinality columns get Parquet dictionary encoding (the others write faster without).
DICTIONARY_COLUMNS = ["status", "host", "worker", "sweep", "error_type", *DEFINITION_COLUMNS]

BASE_COLUMNS = [
    "run_id",
    "status",
    "attempt",
    "retries",
    "replicate",
    "seed",
    "params",
    "started_at",
    "ended_at",
    "duration_s",
    "error_type",
    "error_message",
    "traceback",
    "artifacts",
    "logs",
    "host",
    "pid",
    "worker",
    "sweep",
    *DEFINITION_COLUMNS,
]

STEP_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("name", pa.string()),
        ("step", pa.int64()),
        ("value", pa.float64()),
        ("time", pa.timestamp("us", tz="UTC")),
        ("sweep", pa.string()),
    ]
)

_TS = pa.timestamp("us", tz="UTC")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = prefix + k
        if type(v) is dict:
            if v:
                out.update(flatten(v, key + "."))
            else:
                out[key] = "{}"
        elif type(v) is list:
            out[key] = json.dumps(v, separators=(",", ":"))
        else:
            out[key] = v
    return out


def to_array(values: list[Any]) -> pa.Array:
    """An Arrow array for one column; mixed types fall back to float, then to text."""
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        arr = None
    if arr is not None and not pa.types.is_null(arr.type):
        return arr
    if arr is not None:  # all None
        return pa.array(values, type=pa.float64())
    if all(v is None or isinstance(v, (int, float, bool)) for v in values):
        return pa.array([None if v is None else float(v) for v in values], type=pa.float64())
    return pa.array(
        [None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values],
        type=pa.string(),
    )


def now_us() -> int:
    """Now, in integer microseconds since the epoch (the unit of outcome times)."""
    return time.time_ns() // 1000


#: Status and error type of a run whose process died, or that overran ``timeout=``.
WORKER_DIED = "WorkerDied"
TIMEOUT_STATUS = TIMEOUT
TIMEOUT_ERROR = "Timeout"
#: Sweep statuses: the ``status`` of a sweep's record once it ended.
SWEEP_FINISHED = "finished"
SWEEP_INCOMPLETE = "incomplete"
SWEEP_INTERRUPTED = "interrupted"


def error_outcome(
    run_id: str,
    status: str,
    t0: int,
    t1: int,
    error_type: str,
    message: str,
    *,
    traceback: str = "",
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> list[Any]:
    """The outcome line of a run that did not succeed (``extra`` gains its ``error``)."""
    extra = dict(extra or {})
    extra["error"] = {"type": error_type, "message": message, "traceback": traceback}
    return [run_id, status, t0, t1, metrics or {}, extra]


def info_from_columns(cols: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """run_id -> [params_json, replicate, seed, attempt] from descriptor column lists."""
    return {
        r: [p, rep, seed, att]
        for r, p, rep, seed, att in zip(
            cols["run_id"],
            cols["params"],
            cols["replicate"],
            cols["seed"],
            cols["attempt"],
            strict=True,
        )
    }


def _us(values: Sequence[int]) -> Any:
    import numpy as np

    return np.asarray(values, dtype="int64")


def _ts(values: Sequence[int]) -> pa.Array:
    return pa.array(_us(values), type=pa.int64()).cast(_TS)


def _repeat(value: Any, type: pa.DataType, n: int) -> pa.Array:
    """``n`` copies of one value as an Arrow array (built in C, not from a Python list)."""
    return pa.repeat(pa.scalar(value, type=type), n)


def _json_or_none(values: Iterable[Any]) -> list[str | None]:
    return [None if v is None else json.dumps(v, ensure_ascii=False) for v in values]


def _definition_and_trial(
    n: int, definition: dict[str, Any] | None, extras: Sequence[Any]
) -> dict[str, pa.Array]:
    """The definition columns of ``n`` runs, and a search's ``trial`` column if any."""
    cols: dict[str, pa.Array] = {}
    for key in DEFINITION_COLUMNS:
        value = (definition or {}).get(key)
        cols[key] = _repeat(None if value is None else str(value), pa.string(), n)
    if any(e and TRIAL in e for e in extras):
        cols[TRIAL] = pa.array([e.get(TRIAL) if e else None for e in extras], type=pa.int32())
    return cols


def build_records(
    outcomes: Sequence[list[Any]],
    info: dict[str, list[Any]],
    *,
    params: Sequence[dict[str, Any]] | None = None,
    host: str,
    pid: int,
    worker: str,
    sweep: str,
    aligned: dict[str, list[Any]] | None = None,
    definition: dict[str, Any] | None = None,
) -> pa.Table:
    """One table of run records from outcomes plus descriptor info.

    ``info`` maps run_id -> [params_json, replicate, seed, attempt]; alternatively
    ``aligned`` gives those as columns ("params", "replicate", "seed", "attempt") in
    the order of ``outcomes`` (the fast path of a partition that ran every run).
    ``definition`` gives the :data:`DEFINITION_COLUMNS` values of every run (null when
    unknown: a journal written before records carried them).
    """
    n = len(outcomes)
    run_ids, status, t0, t1, metrics, extras = (
        list(map(operator.itemgetter(i), outcomes)) for i in range(6)
    )
    if aligned is None:
        aligned = _aligned_info(run_ids, info)
    params_json = aligned["params"]
    if params is None:
        params = [json.loads(p) for p in params_json]
    from_extras = _extra_columns(extras)
    cols: dict[str, pa.Array] = {
        "run_id": pa.array(run_ids, type=pa.string()),
        "status": _repeat(status[0], pa.string(), n)
        if n and status.count(status[0]) == n
        else pa.array(status, type=pa.string()),
        "attempt": pa.array(aligned["attempt"], type=pa.int32()),
        "retries": from_extras.pop("retries"),
        "replicate": pa.array(aligned["replicate"], type=pa.int32()),
        "seed": pa.array(aligned["seed"], type=pa.int64()),
        "params": pa.array(params_json, type=pa.string()),
        "started_at": _ts(t0),
        "ended_at": _ts(t1),
        "duration_s": pa.array((_us(t1) - _us(t0)) / 1e6, type=pa.float64()),
        **from_extras,
        "host": _repeat(host, pa.string(), n),
        "pid": _repeat(pid, pa.int32(), n),
        "worker": _repeat(worker, pa.string(), n),
        "sweep": _repeat(sweep, pa.string(), n),
    }
    cols.update(_definition_and_trial(n, definition, extras))
    for k, values in flat_columns(params).items():
        cols[PARAM_PREFIX + k] = to_array(values)
    for k, values in _columns(metrics, _union_keys(metrics)).items():
        cols[METRIC_PREFIX + k] = to_array(values)
    table = pa.table(cols)
    n_steps = sum(len(e["steps"]) for e in extras if e and e.get("steps"))
    table = table.replace_schema_metadata({"metalab.schema_version": str(SCHEMA_VERSION)})
    return with_ledger(table, {sweep: [n, n_steps]} if n else {})


def _extra_columns(extras: list[dict[str, Any] | None]) -> dict[str, pa.Array]:
    """The columns from each outcome's ``extra`` (retries, error, artifacts, logs); all
    null (retries 0) without a Python pass per run when no run has one (the usual)."""
    n = len(extras)
    if not any(extras):
        null = pa.nulls(n, pa.string())
        return {
            "retries": _repeat(0, pa.int32(), n),
            **dict.fromkeys(("error_type", "error_message", "traceback"), null),
            "artifacts": null,
            "logs": null,
        }
    errors = [e.get("error") if e else None for e in extras]
    return {
        "retries": pa.array([e.get("retries", 0) if e else 0 for e in extras], type=pa.int32()),
        "error_type": pa.array([e and e.get("type") for e in errors], type=pa.string()),
        "error_message": pa.array([e and e.get("message") for e in errors], type=pa.string()),
        "traceback": pa.array([e and e.get("traceback") for e in errors], type=pa.string()),
        "artifacts": pa.array(
            _json_or_none(e.get("artifacts") if e else None for e in extras), type=pa.string()
        ),
        "logs": pa.array(
            _json_or_none(e.get("logs") if e else None for e in extras), type=pa.string()
        ),
    }


def _aligned_info(run_ids: Sequence[str], info: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Descriptor columns in the order of ``run_ids``, from ``info[run_id]`` rows."""
    infos = [info[r] for r in run_ids]
    keys = ("params", "replicate", "seed", "attempt")
    return {k: [i[pos] for i in infos] for pos, k in enumerate(keys)}


def flat_columns(dicts: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Column lists of flattened dicts (missing values None), fast when all share flat keys."""
    cols = _columns(dicts, _union_keys(dicts))
    if not any(_NESTED & set(map(type, col)) for col in cols.values()):
        return cols  # flat already (missing keys are None in both ways)
    flats = [flatten(d) for d in dicts]
    return _columns(flats, _union_keys(flats))


_NESTED: set[type] = {dict, list}


def _columns(dicts: Sequence[dict[str, Any]], keys: list[str]) -> dict[str, list[Any]]:
    """``{key: [d.get(key) for d in dicts]}``; plain lookups when every dict has every key."""
    if keys and min(map(len, dicts)) == len(keys):
        return {k: list(map(operator.itemgetter(k), dicts)) for k in keys}
    return {k: [d.get(k) for d in dicts] for k in keys}


def _union_keys(dicts: Sequence[dict[str, Any]]) -> list[str]:
    """Every key of ``dicts``: the first dict's in its order, then others as first seen."""
    if not dicts:
        return []
    first = list(dicts[0])
    if len(set().union(*dicts)) == len(first):  # one C-level pass: no other key
        return first
    keyset = set(first)
    extra: list[str] = []
    for d in dicts:
        for k in d:
            if k not in keyset:
                keyset.add(k)
                extra.append(k)
    return first + extra


def build_steps(outcomes: Sequence[list[Any]], sweep: str) -> pa.Table | None:
    """The long table of stepped metrics of these outcomes, or None when there are none."""
    rows = [(o[0], s) for o in outcomes if o[5] and o[5].get("steps") for s in o[5]["steps"]]
    if not rows:
        return None
    table = pa.table(
        {
            "run_id": pa.array([r for r, _ in rows], type=pa.string()),
            "name": pa.array([s[0] for _, s in rows], type=pa.string()),
            "step": pa.array([s[1] for _, s in rows], type=pa.int64()),
            "value": pa.array([s[2] for _, s in rows], type=pa.float64()),
            "time": _ts([s[3] for _, s in rows]),
            "sweep": pa.array([sweep] * len(rows), type=pa.string()),
        },
        schema=STEP_SCHEMA,
    )
    return with_ledger(table, {sweep: [0, len(rows)]})


# ------------------------------------------------------------------------------ writing
def write_table_file(table: pa.Table, path: Path, *, row_group_size: int) -> None:
    """Write a record or step table as Parquet, with page and footer checksums.

    Only low-cardinality columns are dictionary-encoded (the others write faster
    without).  Pages carry Parquet's CRC-32 (``write_page_checksum``), and the footer
    its own CRC-32 (see :mod:`metalab.store.checksum`).  The table's ledger and the
    file's own name are written with it (see :mod:`metalab.store.ledger`).
    """
    import pyarrow.parquet as pq

    from .checksum import parquet_key_value, seal_parquet_footer
    from .ledger import for_file

    table = for_file(table, path)
    dict_cols = [c for c in DICTIONARY_COLUMNS if c in table.column_names] or False
    with pq.ParquetWriter(
        path,
        table.schema,
        use_dictionary=dict_cols,
        compression="snappy",
        write_statistics=True,
        write_page_checksum=True,
    ) as writer:
        writer.write_table(table, row_group_size=row_group_size)
        writer.add_key_value_metadata({**parquet_key_value(), **distinct_flag(table)})
    seal_parquet_footer(path)
