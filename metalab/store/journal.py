"""Per-partition journals: run records made durable one by one while a partition runs.

A journal is a text file ``journal/<sweep>-<part>-<token>-h<host>p<pid>.jsonl`` (``host``:
the CRC-32 of the writer's host name; a journal killed before its header is complete is
removed by recovery once that writer is known dead).  Its first line
is a JSON header with the partition's run descriptors (column lists under ``cols``);
each further line is one run's outcome (see :mod:`metalab.store.records`) as tab-separated fields::

    run_id <TAB> status <TAB> started_us <TAB> ended_us <TAB> metrics JSON <TAB> extra JSON

(JSON never contains a raw tab, and this costs a fraction of encoding the whole line
as JSON.)  A journal shared by several partitions (a search's trials run by its driver)
has an empty header and a ``__cols__`` line with each partition's descriptors before
its outcomes.  Every line, the header too, ends with a tab and the CRC-32 of the rest of the
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
import re
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
#: The writer's host in journal names (the name of a host can be long or unsafe).
HOST_TAG = f"{crc32(HOST.encode()):08x}"
_WRITER = re.compile(r"-h([0-9a-f]{8})p([0-9]+)\.jsonl$")
START_MARK = "__start__"
#: A line adding descriptors to the header's (a search's trials sharing one journal).
COLS_MARK = "__cols__"
SLOW_RUN_US = 20_000
#: Journal format: 3 seals every line with a CRC-32; 2 (no checksums) is still read.
VERSION = 3


_SPECIAL = {float("inf"): "Infinity", float("-inf"): "-Infinity"}


def encode_metrics(metrics: dict[str, Any]) -> str:
    """JSON of a flat dict of numbers: the text of ``json.dumps(metrics,
    separators=(",", ":"))`` (NaN and infinities as JSON's extensions)."""
    return _metrics_json(metrics)


def _metrics_encoder() -> Any:
    """json's C encoder, built once (``json.dumps`` builds one per call, which costs more
    than encoding a few numbers): the same text as ``_dumps``. It skips the cycle check:
    metrics are numbers, checked by ``capture``, and cannot contain themselves."""
    from json import encoder

    c_make_encoder = getattr(encoder, "c_make_encoder", None)  # not in typeshed
    if c_make_encoder is None:  # pragma: no cover - CPython always has it
        return None
    encode_basestring_ascii = encoder.encode_basestring_ascii
    enc = c_make_encoder(None, None, encode_basestring_ascii, None, ":", ",", False, False, True)

    def encode(metrics: dict[str, Any]) -> str:
        return "".join(enc(metrics, 0))

    return encode


_metrics_json = _metrics_encoder() or _dumps


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
    """Appends run outcomes to a journal file, flushing every ``flush_every`` runs.

    Lines are kept as bytes until :meth:`_flush` writes them with one ``os.write``: the
    only place where journal bytes reach the file.
    """

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
        token = f"{uuid.uuid4().hex[:10]}-h{HOST_TAG}p{os.getpid()}"
        self.path = folder / f"{journal_prefix(sweep, part)}{token}.jsonl"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.path, flags, 0o666)
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
        self._lines: list[bytes] = [(seal_line(_dumps(header)) + "\n").encode()]
        self._flush_every = flush_every
        self._flush()
        self._last_flush_us = time.time_ns() // 1000  # the header was just flushed
        #: Called after each flush (a remote store uploads its journal in batches).
        self.after_flush: Callable[[], None] | None = None

    def append(self, outcome: list[Any]) -> None:
        """Write one outcome line; flush every ``flush_every`` lines or after a slow run."""
        run_id, status, t0, t1, metrics, extra = outcome
        body = (
            f"{run_id}\t{status}\t{t0}\t{t1}\t{_metrics_json(metrics) if metrics else '{}'}\t"
            f"{'' if extra is None else _dumps(extra)}"
        ).encode()
        lines = self._lines
        lines.append(b"%s\t%08x\n" % (body, crc32(body)))
        if len(lines) >= self._flush_every or t1 - self._last_flush_us > SLOW_RUN_US:
            self._flush()
            self._last_flush_us = t1
            if self.after_flush is not None:
                self.after_flush()

    def add_columns(self, columns: dict[str, list[Any]]) -> None:
        """Add descriptors to the header's (written with the next flush): a journal shared
        by several partitions, each adding its runs before their outcomes."""
        self._lines.append((seal_line(f"{COLS_MARK}\t{_dumps(columns)}") + "\n").encode())

    def flush(self) -> None:
        """Write what is buffered now (a start mark; the end of a partition sharing this
        journal)."""
        self._flush()
        if self.after_flush is not None:
            self.after_flush()

    def mark_started(self, run_id: str) -> None:
        """Note (durably) that a run is starting; used on retries to find killer runs."""
        self._lines.append((seal_line(f"{START_MARK}\t{run_id}") + "\n").encode())
        self.flush()

    def _flush(self) -> None:
        """Write the buffered lines to the journal file, in one ``os.write`` (the journal's
        only write: every byte of it reaches the disk here)."""
        if not self._lines:
            return
        data = b"".join(self._lines)
        self._lines.clear()
        done = os.write(self._fd, data)
        if done < len(data):  # a short write (a signal, a nearly full disk): the rest
            rest = memoryview(data)[done:]
            while rest:
                rest = rest[os.write(self._fd, rest) :]

    def close(self) -> None:
        """Close the file (writing what is buffered); the journal stays on disk."""
        if self._fd >= 0:
            try:
                self._flush()
            finally:
                os.close(self._fd)
                self._fd = -1

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
        self.more_columns: list[dict[str, list[Any]]] = []  # from COLS_MARK lines
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
                elif body.startswith(COLS_MARK):
                    self.more_columns.append(_checked_columns(body.split("\t", 1)[1]))
                else:
                    self.outcomes.append(parse_outcome(body))
            except (ValueError, IndexError, TypeError):
                self.damaged_lines.append(number)

    @property
    def info(self) -> dict[str, list[Any]]:
        """run_id -> [params_json, replicate, seed, attempt] from the header and the
        ``__cols__`` lines."""
        from .records import info_from_columns

        if not self.header:
            return {}
        info = info_from_columns(self.header["cols"])
        for cols in self.more_columns:
            info.update(info_from_columns(cols))
        return info

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
        """True/False when the writer ran on this host; None when unknown (other host).

        Without a complete header (its writer was killed while creating it) the writer
        is the one the file's name gives.
        """
        if not self.header:
            found = _WRITER.search(self.path.name)
            if found is None or found.group(1) != HOST_TAG or self.header_damage:
                return None
            pid = int(found.group(2))
        elif self.header.get("host") != HOST:
            return None
        else:
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


DESCRIPTORS = ("run_id", "params", "replicate", "seed", "attempt")


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
        and _columns_ok(cols)
    )
    return (h, None) if ok else (None, "header lacks the partition's descriptors")


def _columns_ok(cols: Any) -> bool:
    return (
        isinstance(cols, dict)
        and all(isinstance(cols.get(k), list) for k in DESCRIPTORS)
        and len({len(cols[k]) for k in DESCRIPTORS}) == 1
    )


def _checked_columns(text: str) -> dict[str, list[Any]]:
    """The descriptors of a COLS_MARK line (ValueError: not descriptors, a damaged line)."""
    cols = json.loads(text)
    if not _columns_ok(cols):
        raise ValueError("not a partition's descriptors")
    return dict(cols)


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
