"""The trials a search asked, in order: ``<store>/search/trials.jsonl``.

A trial's line (its number and configuration) is written *before* its runs are
submitted, so after a killed driver the next start knows every trial that may have run:
its runs are found by run id in the records; the ones without a record run then.
A torn last line (the driver died while writing it) is ignored: its trial never ran.
Lines reach the OS at once (a killed process loses none) and the disk when the trials'
records are folded into Parquet (:meth:`Ledger.sync` first): like the runs' journals,
an fsync per trial would cost more than a no-op trial.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class Ledger:
    """Append-only list of ``{"trial": k, "params": {...}}`` lines."""

    def __init__(self, store_root: Path) -> None:
        self.folder = Path(store_root) / "search"
        self.path = self.folder / "trials.jsonl"
        self._checked = False
        self._fd: int | None = None
        self._unsynced = False  # lines written since the last fsync

    def read(self) -> list[dict[str, Any]]:
        """The complete lines, in the order written."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.split("\n"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # the torn last line of a killed driver, or the final ""
            if isinstance(entry, dict) and "trial" in entry and "params" in entry:
                out.append(entry)
        return out

    def append(self, trial: int, params_json: str) -> None:
        """Write one trial's line, its configuration as canonical JSON (to the OS: it
        survives the process, see :meth:`sync`)."""
        line = '{"trial":' + str(int(trial)) + ',"params":' + params_json + "}\n"
        if not self._checked:  # a torn last line must not swallow this one
            self._checked = True
            if self.path.exists() and not self.path.read_bytes().endswith(b"\n"):
                line = "\n" + line if self.path.stat().st_size else line
        if self._fd is None:
            self.folder.mkdir(exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(self._fd, line.encode())
        self._unsynced = True

    def sync(self) -> None:
        """Make the lines written so far durable (before the trials' records are)."""
        if self._fd is not None and self._unsynced:
            os.fsync(self._fd)
            self._unsynced = False

    def close(self) -> None:
        """Sync and close the file."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                if self._unsynced:
                    os.fsync(fd)
                    self._unsynced = False
            finally:
                os.close(fd)
