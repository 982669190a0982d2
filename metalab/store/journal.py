"""Per-partition journals: run records made durable one by one while a partition runs.

A journal is a text file ``journal/<sweep>-<part>-<token>.jsonl``.  Its first line
is a JSON header with the partition's run descriptors (column lists under ``cols``);
each further line is one run's outcome (see :mod:`metalab.store.records`) as tab-separated fields::

    run_id <TAB> status <TAB> started_us <TAB> ended_us <TAB> metrics JSON <TAB> extra JSON

(JSON never contains a raw tab, and this costs a fraction of encoding the whole line
as JSON.)  Every line, the header too, ends with a tab and the CRC-32 of the rest of the
line (:mod:`metalab.store.checksum`): a damaged line is reported, never read as data.
Lines are flushed to the OS every few runs (at most ``flush_every``, and
at once after any run slower than 20 ms), so a killed process loses at most a few
finished runs plus the run in flight.  When the partition ends, its
records are written as one Parquet file and the journal is deleted.  A journal left by
a dead process is a valid source of records until it is folded into Parquet.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zlib import crc32

from .checksum import FOLDER, open_line, seal_line
from .paths import plain_files, read_file

if TYPE_CHECKING:
    import pyarrow as pa

_dumps = json.JSONEncoder(allow_nan=True, separators=(",", ":")).encode
HOST = socket.gethostname()
START_MARK = "__start__"
SLOW_RUN_US = 20_000
#: Journal format: 3 seals every line with a CRC-32; 2 (no checksums) is still read.
VERSION = 3


_KEYS: dict[str, str] = {}
_SPECIAL = {float("inf"): "Infinity", float("-inf"): "-Infinity"}


def encode_metrics(metrics: dict[str, Any]) -> str:
    """JSON of a flat dict of numbers, ~4x faster than ``json.dumps`` for small dicts.

    Same text as ``json.dumps(metrics, separators=(",", ":"))``; anything but
    int/float/bool values falls back to it.
    """
    parts = []
    for k, v in metrics.items():
        key = _KEYS.get(k)
        if key is None:
            key = _KEYS[k] = _dumps(k) + ":" if isinstance(k, str) else ""
        t = type(v)
        if t is float:
            if v != v:
                text = "NaN"
            else:
                text = _SPECIAL.get(v) or float.__repr__(v)
        elif t is int:
            text = int.__repr__(v)
        elif t is bool:
            text = "true" if v else "false"
        else:
            return _dumps(metrics)
        if not key:
            return _dumps(metrics)
        parts.append(key + text)
    return "{" + ",".join(parts) + "}"


def parse_outcome(line: str) -> list[Any]:
    """One outcome line back to ``[run_id, status, t0, t1, metrics, extra]``."""
    run_id, status, t0, t1, metrics, extra = line.split("\t")
    return [
        run_id,
        status,
        int(t0),
        int(t1),
        json.loads(metrics) if metrics != "{}" else {},
        json.loads(extra) if extra else None,
    ]


def journal_prefix(sweep: str, part: int) -> str:
    """The filename prefix shared by every attempt at one partition."""
    return f"{sweep}-{part:06d}-"


def journal_part(name: str, sweep: str) -> int:
    """The partition number in the name of one of ``sweep``'s journal files."""
    return int(name[len(sweep) + 1 :].split("-", 1)[0])


class JournalWriter:
    """Appends run outcomes to a journal file, flushing every ``flush_every`` runs."""

    def __init__(
        self,
        folder: Path,
        *,
        sweep: str,
        part: int,
        columns: dict[str, list[Any]],
        worker: str,
        flush_every: int = 4,
        definition: dict[str, str] | None = None,
    ) -> None:
        self.path = folder / f"{journal_prefix(sweep, part)}{uuid.uuid4().hex[:10]}.jsonl"
        self._f = open(self.path, "w", encoding="utf-8", buffering=1 << 16)
        header = {
            "v": VERSION,
            "sweep": sweep,
            "part": part,
            "host": HOST,
            "pid": os.getpid(),
            "worker": worker,
            "cols": columns,
        }
        if definition:  # the runs' definition columns (see records.DEFINITION_COLUMNS)
            header["definition"] = definition
        self._f.write(seal_line(_dumps(header)) + "\n")
        self._f.flush()
        self._pending = 0
        self._flush_every = flush_every
        self._last_flush_us = time.time_ns() // 1000  # the header was just flushed
        #: Called after each flush (a remote store uploads its journal in batches).
        self.after_flush: Callable[[], None] | None = None

    def append(self, outcome: list[Any]) -> None:
        """Write one outcome line; flush every ``flush_every`` lines or after a slow run."""
        run_id, status, t0, t1, metrics, extra = outcome
        body = (
            f"{run_id}\t{status}\t{t0}\t{t1}\t{encode_metrics(metrics) if metrics else '{}'}\t"
            f"{'' if extra is None else _dumps(extra)}"
        )
        self._f.write(f"{body}\t{crc32(body.encode()):08x}\n")
        self._pending += 1
        if self._pending >= self._flush_every or t1 - self._last_flush_us > SLOW_RUN_US:
            self._f.flush()
            self._pending = 0
            self._last_flush_us = t1
            if self.after_flush is not None:
                self.after_flush()

    def mark_started(self, run_id: str) -> None:
        """Note (durably) that a run is starting; used on retries to find killer runs."""
        self._f.write(seal_line(f"{START_MARK}\t{run_id}") + "\n")
        self._f.flush()
        self._pending = 0
        if self.after_flush is not None:
            self.after_flush()

    def close(self) -> None:
        """Close the file (flushing what is buffered); the journal stays on disk."""
        if not self._f.closed:
            self._f.close()

    def discard(self) -> None:
        """Close and delete the journal (its records are safe in Parquet)."""
        self.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class Journal:
    """A journal read back: header, complete outcome lines, and runs started but unfinished.

    A header that fails its checksum sets ``header_damage`` (the journal cannot be read
    at all); lines that fail theirs are skipped and their line numbers listed in
    ``damaged_lines``.  A missing file reads as empty; a file that cannot be opened
    (permissions) raises OSError.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header: dict[str, Any] | None = None
        self.header_damage: str | None = None
        self.damaged_lines: list[int] = []
        self.outcomes: list[list[Any]] = []
        self.started: list[str] = []
        try:
            data = read_file(path)  # never through a link; unreadable: StoreError, kept
        except FileNotFoundError:
            return
        except IsADirectoryError:
            self.header_damage = FOLDER
            return
        lines = data.split(b"\n")
        if len(lines) == 1:  # no complete line: the header is being written, or damage
            if data and not data.startswith(b"{"):
                self.header_damage = "no header line"
            return
        self.header, self.header_damage = _read_header(lines[0])
        if self.header is None:
            return
        sealed = self.header["v"] >= 3
        # The last element is "" when the file ends with a newline, else a line being
        # written; a complete sealed line followed by one stray byte is a damaged newline.
        tail = lines[-1]
        if sealed and len(tail) > 9 and open_line(tail[:-1]) is not None:
            self.damaged_lines.append(len(lines))
        for number, raw in enumerate(lines[1:-1], start=2):
            body = open_line(raw) if sealed else raw.decode("utf-8", errors="replace")
            try:
                if body is None:
                    raise ValueError("checksum mismatch")
                if body.startswith(START_MARK):
                    self.started.append(body.split("\t", 1)[1])
                else:
                    self.outcomes.append(parse_outcome(body))
            except (ValueError, IndexError, TypeError):
                self.damaged_lines.append(number)

    @property
    def info(self) -> dict[str, list[Any]]:
        """run_id -> [params_json, replicate, seed, attempt] from the header."""
        from .records import info_from_columns

        return info_from_columns(self.header["cols"]) if self.header else {}

    def tables(self) -> tuple[pa.Table | None, pa.Table | None]:
        """Records and stepped metrics of the runs this journal finished (None if none).

        The records keep the writer's host, pid and worker from the header.
        """
        from .records import build_records, build_steps

        h = self.header
        info = self.info
        done = [o for o in self.outcomes if o[0] in info]
        if h is None or not done:
            return None, None
        definition = h.get("definition")
        records = build_records(
            done,
            info,
            host=h["host"],
            pid=h["pid"],
            worker=h.get("worker", ""),
            sweep=h["sweep"],
            definition=definition if isinstance(definition, dict) else None,
        )
        return records, build_steps(done, h["sweep"])

    def writer_alive(self) -> bool | None:
        """True/False when the writer ran on this host; None when unknown (other host)."""
        if not self.header or self.header.get("host") != HOST:
            return None
        pid = int(self.header.get("pid", -1))
        if pid == os.getpid():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not _is_zombie(pid)


_DESCRIPTORS = ("run_id", "params", "replicate", "seed", "attempt")


def _read_header(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(header, None) for a good header line, else (None, why it is damaged)."""
    sealed = b"\t" in raw
    body = open_line(raw) if sealed else raw.decode("utf-8", errors="replace")
    if body is None:
        return None, "header checksum mismatch"
    try:
        h = json.loads(body)
    except ValueError:
        return None, "header is not valid JSON"
    if not isinstance(h, dict) or not isinstance(h.get("v"), int):
        return None, "header has no format version"
    if h["v"] < 2:
        return None, f"unknown journal format {h['v']}"
    if h["v"] >= 3 and not sealed:
        return None, "header has no checksum"
    cols = h.get("cols")
    ok = (
        isinstance(h.get("sweep"), str)
        and isinstance(h.get("part"), int)
        and isinstance(h.get("host"), str)
        and isinstance(h.get("pid"), int)
        and isinstance(cols, dict)
        and all(isinstance(cols.get(k), list) for k in _DESCRIPTORS)
        and len({len(cols[k]) for k in _DESCRIPTORS}) == 1
    )
    return (h, None) if ok else (None, "header lacks the partition's descriptors")


def _is_zombie(pid: int) -> bool:
    """A killed process not yet reaped by its parent (Linux; elsewhere False)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] in (b"Z", b"X")


def list_journals(folder: Path, prefix: str = "") -> list[Path]:
    """Journal files in ``folder`` (optionally of one partition; links are quarantined)."""
    return plain_files(folder, ".jsonl", prefix)
