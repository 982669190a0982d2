"""Per-partition journals: run records made durable one by one while a partition runs.

A journal is a JSON-lines file ``journal/<sweep>-<part>-<token>.jsonl``.  Its first
line is a header with the partition's run descriptors; each further line is one run's
outcome (see :mod:`metalab.store.records`), flushed to the OS as soon as the run ends,
so a killed process loses at most the run in flight.  When the partition ends, its
records are written as one Parquet file and the journal is deleted.  A journal left by
a dead process is a valid source of records until it is folded into Parquet.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from pathlib import Path
from typing import Any

_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=True, separators=(",", ":")).encode
HOST = socket.gethostname()


def journal_prefix(sweep: str, part: int) -> str:
    """The filename prefix shared by every attempt at one partition."""
    return f"{sweep}-{part:06d}-"


class JournalWriter:
    """Appends run outcomes to a journal file, flushing every ``flush_every`` runs."""

    def __init__(
        self,
        folder: Path,
        *,
        sweep: str,
        part: int,
        runs: list[list[Any]],
        worker: str,
        flush_every: int = 1,
    ) -> None:
        self.path = folder / f"{journal_prefix(sweep, part)}{uuid.uuid4().hex[:10]}.jsonl"
        self._f = open(self.path, "w", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
        header = {
            "v": 1, "sweep": sweep, "part": part, "host": HOST, "pid": os.getpid(),
            "worker": worker, "runs": runs,
        }
        self._f.write(_dumps(header) + "\n")
        self._f.flush()
        self._pending = 0
        self._flush_every = flush_every

    def append(self, outcome: list[Any]) -> None:
        """Write one outcome line; flush when ``flush_every`` lines are pending."""
        self._f.write(_dumps(outcome) + "\n")
        self._pending += 1
        if self._pending >= self._flush_every:
            self._f.flush()
            self._pending = 0

    def mark_started(self, run_id: str) -> None:
        """Note (durably) that a run is starting; used on retries to find killer runs."""
        self._f.write(_dumps(["__start__", run_id]) + "\n")
        self._f.flush()

    def close(self) -> None:
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
    """A journal read back: header, complete outcome lines, and runs started but unfinished."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header: dict[str, Any] | None = None
        self.outcomes: list[list[Any]] = []
        self.started: list[str] = []
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        lines = data.split(b"\n")
        # The last element is b"" when the file ends with a newline, else a torn line.
        for raw in lines[:-1]:
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if self.header is None:
                if isinstance(obj, dict):
                    self.header = obj
                continue
            if obj and obj[0] == "__start__":
                self.started.append(obj[1])
            else:
                self.outcomes.append(obj)

    @property
    def info(self) -> dict[str, list[Any]]:
        """run_id -> [params_json, replicate, seed, attempt] from the header."""
        if not self.header:
            return {}
        return {r[0]: r[1:] for r in self.header["runs"]}

    @property
    def run_order(self) -> list[str]:
        return [r[0] for r in self.header["runs"]] if self.header else []

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
        return True


def list_journals(folder: Path, prefix: str = "") -> list[Path]:
    """Journal files in ``folder`` (optionally of one partition)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(
        folder / n for n in names if n.endswith(".jsonl") and n.startswith(prefix)
        and not n.startswith(".")
    )
