"""The ledger: how much data each file accounts for, so that vanished files are noticed.

Every record and step table carries, in its schema metadata (hence in its Parquet
footer), a ledger ``{sweep: [records, step points]}``.  It is summed when tables are
merged, including over the older attempts a compaction drops, so it counts what the
file *stands for*, not only the rows it holds.  A merged file also names its inputs
(``metalab.merged_from``): an input left behind by a crash inside compaction is then
not counted twice.

When a sweep ends, the store's totals (records and points over all files and journals)
are written into its sweep file (``store_records``, ``store_points``).  Data is never
removed from a store, so a reader that finds smaller totals than a sweep file reports
that data vanished (a deleted or quarantined file) instead of returning less in silence.
The records total recovers by itself once ``resume=True`` has run the missing runs again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa

Ledger = dict[str, list[int]]

LEDGER_KEY = b"metalab.ledger"
#: The file's own name, and the names of the files a merged file was made of.
FILE_KEY = b"metalab.file"
SOURCES_KEY = b"metalab.merged_from"
#: Sweep file keys of the store's totals when the sweep ended.
TOTAL_KEYS = ("store_records", "store_points")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def with_ledger(table: pa.Table, ledger: Ledger) -> pa.Table:
    """``table`` carrying ``ledger`` in its schema metadata."""
    meta = dict(table.schema.metadata or {})
    meta[LEDGER_KEY] = _dumps(ledger)
    return table.replace_schema_metadata(meta)


def parse_ledger(raw: bytes | None) -> Ledger | None:
    """A ledger from its metadata text, or None when absent or malformed."""
    if raw is None:
        return None
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not all(
        isinstance(v, list) and len(v) == 2 and all(type(n) is int for n in v) for v in obj.values()
    ):
        return None
    return obj


def ledger_of(table: pa.Table) -> Ledger:
    """The ledger a table carries, else counted from its ``sweep`` column."""
    found = parse_ledger((table.schema.metadata or {}).get(LEDGER_KEY))
    if found is not None:
        return found
    if "sweep" not in table.column_names or table.num_rows == 0:
        return {}
    import pyarrow.compute as pc

    slot = 0 if "status" in table.column_names else 1  # a records table, or a steps table
    out: Ledger = {}
    for item in pc.value_counts(table.column("sweep")).to_pylist():
        pair = [0, 0]
        pair[slot] = int(item["counts"])
        out[str(item["values"])] = pair
    return out


def add_ledgers(ledgers: Iterable[Ledger]) -> Ledger:
    """The sum of several ledgers, sweep by sweep."""
    out: Ledger = {}
    for led in ledgers:
        for sweep, (recs, steps) in led.items():
            total = out.setdefault(sweep, [0, 0])
            total[0] += recs
            total[1] += steps
    return out


def _names(raw: bytes | None) -> list[str]:
    try:
        obj = json.loads(raw) if raw is not None else []
    except ValueError:
        return []
    return [str(n) for n in obj] if isinstance(obj, list) else []


def merged_metadata(tables: Iterable[pa.Table]) -> dict[bytes, bytes]:
    """Schema metadata of the concatenation of ``tables``: summed ledger, inputs named.

    An input that another input was merged from (a leftover of a crash inside
    compaction) is a duplicate: its ledger is not added again.
    """
    tables = list(tables)
    metas = [t.schema.metadata or {} for t in tables]
    contained = {n for m in metas for n in _names(m.get(SOURCES_KEY))}
    files = [m.get(FILE_KEY, b"").decode() for m in metas]
    ledger = add_ledgers(
        ledger_of(t) for t, f in zip(tables, files, strict=True) if not f or f not in contained
    )
    meta = {k: v for k, v in metas[0].items() if k not in (FILE_KEY, SOURCES_KEY)}
    meta[LEDGER_KEY] = _dumps(ledger)
    if any(files):
        meta[SOURCES_KEY] = _dumps(sorted(f for f in files if f))
    return meta


def for_file(table: pa.Table, path: Path) -> pa.Table:
    """``table`` with the metadata of the file it is written to (ledger, own name).

    ``path`` may be the temp file of an atomic write (``.tmp-<token>-<name>``).
    """
    from .atomic import TMP_PREFIX

    name = path.name
    if name.startswith(TMP_PREFIX):
        name = name[len(TMP_PREFIX) :].split("-", 1)[1]
    meta = dict(table.schema.metadata or {})
    meta[LEDGER_KEY] = _dumps(ledger_of(table))
    meta[FILE_KEY] = name.encode()
    return table.replace_schema_metadata(meta)


def file_ledgers(kvs: Iterable[dict[bytes, bytes] | None]) -> Ledger | None:
    """The summed ledger of the files with these footers (None: a file has none).

    Files named as the inputs of another file are left out (they are duplicates).
    """
    metas: list[dict[bytes, bytes]] = [kv or {} for kv in kvs]
    contained = {n for kv in metas for n in _names(kv.get(SOURCES_KEY))}
    ledgers = []
    for kv in metas:
        if kv.get(FILE_KEY, b"").decode() in contained:
            continue
        led = parse_ledger(kv.get(LEDGER_KEY))
        if led is None:
            return None  # a file written before ledgers existed
        ledgers.append(led)
    return add_ledgers(ledgers)


def file_totals(kvs: Iterable[dict[bytes, bytes] | None]) -> list[int] | None:
    """``[records, points]`` the files with these footers stand for (None: unknown)."""
    led = file_ledgers(kvs)
    if led is None:
        return None
    return [sum(v[0] for v in led.values()), sum(v[1] for v in led.values())]


def shortfall(sweeps: Iterable[dict[str, Any]], now: list[int]) -> list[str]:
    """What vanished: the largest totals sweep files recorded against ``now`` (sentences)."""
    best = [(0, ""), (0, "")]
    for info in sweeps:
        for i, key in enumerate(TOTAL_KEYS):
            v = info.get(key)
            if type(v) is int and v > best[i][0]:
                best[i] = (v, str(info.get("sweep")))
    out = []
    (recs, sweep_r), (points, sweep_p) = best
    if now[0] < recs:
        out.append(
            f"{recs - now[0]} run records are missing: the store held {recs} when sweep "
            f"{sweep_r} ended and holds {now[0]} now (a records file was deleted or "
            "quarantined). The runs count as not run: resume=True runs them again"
        )
    if now[1] < points:
        out.append(
            f"{points - now[1]} stepped-metric points are missing: the store held {points} "
            f"when sweep {sweep_p} ended and holds {now[1]} now (a metrics file was deleted "
            "or quarantined). Run `metalab repair` to find the runs that lost them, then "
            "resume=True runs those again"
        )
    return out
