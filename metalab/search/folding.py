"""Folding a search's trial journals into Parquet, many trials per file.

A trial's task leaves its journal as the trial's records (flushed to the OS when the
task ends, like every partition's journal): a SIGKILLed driver loses nothing, readers
see journals as records, and the next ``run()`` folds the journals of dead writers.
A Parquet file per trial would cost a write and an fsync each, more than the trial
itself on a no-op objective; the driver instead folds the journals of the trials that
finished into one file every few seconds (or few hundred trials) and when the search ends.

Order of a fold: the ledger is synced (every folded trial is listed), the Parquet
files are written atomically (synced, renamed), then the journals are deleted.  A
crash in between leaves a run both in Parquet and in a journal; readers keep one.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

from .._hashing import canonical_json
from ..store.journal import Journal, journal_part, list_journals
from ..store.reader import concat, read_journal, retire_journal

if TYPE_CHECKING:
    import pyarrow as pa

    from ..store.store import Store
    from .ledger import Ledger


class Folder:
    """The finished trials of one search whose journals are still to fold."""

    def __init__(self, store: Store, sweep_id: str, ledger: Ledger) -> None:
        self.store, self.sweep_id, self.ledger = store, sweep_id, ledger
        self.parts: set[int] = set()
        self.kept: list[Any] = []  # attempts run in this process: records built from memory
        self.read: dict[str, Journal] = {}  # journals the driver read already, by path
        self.last = time.monotonic()  # of the last fold

    def age(self) -> float:
        """Seconds since the last fold (or since the search started)."""
        return time.monotonic() - self.last

    @property
    def pending(self) -> int:
        """Finished trials whose journals are not folded yet."""
        return len(self.parts) + len(self.kept)

    def keep(self, attempt: Any) -> None:
        """A trial run in this process (a ``partition._Attempt`` without earlier attempts)."""
        if attempt.outcomes:
            self.kept.append(attempt)

    def finished(self, number: int, journals: list[Journal] | None = None) -> None:
        """Trial ``number``'s task ended: its journals are complete (``journals``: the
        ones the driver read, not read again when they are folded)."""
        self.parts.add(number)
        for j in journals or ():
            self.read[str(j.path)] = j

    def fold(self) -> int:
        """Fold the finished trials' journals into one Parquet file; returns runs folded."""
        self.last = time.monotonic()
        if not self.pending:
            return 0
        from ..store.files import write_partition

        layout = self.store.layout
        self.ledger.sync()
        journals = []
        if self.parts:
            for path in list_journals(layout.journal, f"{self.sweep_id}-"):
                if journal_part(path.name, self.sweep_id) in self.parts:
                    j = self.read.pop(str(path), None) or read_journal(layout, path)
                    if j is not None:  # None: a damaged header, quarantined
                        journals.append(j)
        records, steps = _tables(journals)
        kept, self.kept = self.kept, []
        if kept:
            rec, st = _memory_tables(kept)
            records.append(rec)
            if st is not None:
                steps.append(st)
        if records:
            write_partition(
                layout,
                f"{self.sweep_id}-trials",
                concat(records),
                concat(steps) if steps else None,
            )
        for j in journals:
            retire_journal(layout, j)  # deleted, or quarantined if lines were damaged
        for a in kept:
            if not a.shared:  # a journal shared by trials is deleted by their runner
                a.journal.discard()
        self.parts.clear()
        self.read.clear()
        return sum(t.num_rows for t in records)


def _tables(journals: list[Journal]) -> tuple[list[pa.Table], list[pa.Table]]:
    """Record and step tables of the journals, one build per writer (not per journal)."""
    from ..store.records import build_records, build_steps

    groups: dict[tuple[Any, ...], tuple[list[list[Any]], dict[str, list[Any]]]] = {}
    for j in journals:
        h = j.header
        if h is None:
            continue
        info = j.info
        definition = h.get("definition")
        definition = definition if isinstance(definition, dict) else None
        key = (h["host"], h["pid"], h.get("worker", ""), h["sweep"], canonical_json(definition))
        outcomes, infos = groups.setdefault(key, ([], {}))
        outcomes.extend(o for o in j.outcomes if o[0] in info)
        infos.update(info)
    records, steps = [], []
    for (host, pid, worker, sweep, definition), (outcomes, infos) in groups.items():
        if not outcomes:
            continue
        records.append(
            build_records(
                outcomes,
                infos,
                host=host,
                pid=pid,
                worker=worker,
                sweep=sweep,
                definition=json.loads(definition),
            )
        )
        st = build_steps(outcomes, sweep)
        if st is not None:
            steps.append(st)
    return records, steps


def _memory_tables(kept: list[Any]) -> tuple[pa.Table, pa.Table | None]:
    """Records and steps of attempts run in this process, from their outcomes in memory.

    Each ran every run of its partition in order (no earlier attempt), so its outcomes
    align with the first rows of its descriptor columns.
    """
    from ..store.journal import HOST
    from ..store.records import build_records, build_steps

    first = kept[0]
    outcomes: list[list[Any]] = []
    params: list[dict[str, Any]] = []
    aligned: dict[str, list[Any]] = {k: [] for k in ("params", "replicate", "seed", "attempt")}
    for a in kept:
        n = len(a.outcomes)
        outcomes.extend(a.outcomes)
        params.extend(a.params)
        for k, col in aligned.items():
            col.extend(a.cols[k][:n])
    sweep = first.task.sweep
    records = build_records(
        outcomes,
        {},
        params=params,
        aligned=aligned,
        host=HOST,
        pid=os.getpid(),
        worker=first.worker,
        sweep=sweep,
        definition=first.task.definition,
    )
    return records, build_steps(outcomes, sweep)
