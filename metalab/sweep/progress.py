"""Progress display: a rich bar when rich is installed, silence otherwise."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..store.journal import COLS_MARK, START_MARK, journal_part, list_journals
from ..store.records import SUCCESS

_MARKS = (b"{", START_MARK.encode(), COLS_MARK.encode())


class Counts:
    """Run counts of a sweep, updated from callbacks or from journal polling."""

    __slots__ = ("failed", "skipped", "success")

    def __init__(self, skipped: int = 0) -> None:
        self.success = 0
        self.failed = 0
        self.skipped = skipped

    def add(self, status: str) -> None:
        """Count one finished run by its status."""
        if status == SUCCESS or status == "pruned":  # stopped early on purpose, not failed
            self.success += 1
        else:
            self.failed += 1

    @property
    def done(self) -> int:
        """Runs finished so far (successful or not)."""
        return self.success + self.failed


class JournalPoller:
    """Counts finished runs of one sweep by tailing its journal files (cluster executors).

    Workers write their journals straight into the store, so the driver sees each run
    as it ends, whatever machine ran it.  A partition's count is the sum over its
    journals (a retried partition has one per attempt) until the driver records the
    partition's summary in ``final``, which then replaces it: its journals are deleted
    once its records are in Parquet, and lines written after the last poll were never
    read.
    """

    def __init__(self, journal_dir: Path, sweep: str) -> None:
        self.dir = journal_dir
        self.sweep = sweep
        self.prefix = f"{sweep}-"
        self._files: dict[str, tuple[int, int, int, int]] = {}  # name -> offset, part, ok, bad
        self.final: dict[int, tuple[int, int]] = {}  # part -> (success, failed) when done
        # The progress thread polls while the driver may poll once more at the end.
        self._lock = threading.Lock()

    def _tail(self, path: Path) -> None:
        offset, part, ok, bad = self._files.get(
            path.name, (0, journal_part(path.name, self.sweep), 0, 0)
        )
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:  # folded into Parquet meanwhile: keep what was counted
            return
        end = data.rfind(b"\n")
        if end < 0:  # nothing complete yet; a torn last line is read again next time
            return
        for line in data[: end + 1].split(b"\n")[:-1]:
            if line.startswith(_MARKS):  # the header, a run-start mark, more descriptors
                continue
            if b"\tsuccess\t" in line[:80]:  # run id (32) + status: never in the metrics
                ok += 1
            else:
                bad += 1
        self._files[path.name] = (offset + end + 1, part, ok, bad)

    def poll(self) -> tuple[int, int]:
        """(success, failed) runs of the sweep so far."""
        with self._lock:
            for path in list_journals(self.dir, self.prefix):
                self._tail(path)
            live: dict[int, tuple[int, int]] = {}
            for _off, part, ok, bad in self._files.values():
                a, b = live.get(part, (0, 0))
                live[part] = (a + ok, b + bad)
            live.update(dict(self.final))  # a copy: the driver thread adds to ``final``
        return sum(v[0] for v in live.values()), sum(v[1] for v in live.values())


class ProgressDisplay:
    """Shows a sweep's progress; ``poll`` (if given) is called to refresh the counts."""

    def __init__(
        self,
        total: int,
        counts: Counts,
        *,
        enabled: bool,
        label: str,
        poll: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self.total = total
        self.counts = counts
        self.poll = poll
        self.label = label
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress: Any = None
        self._task: Any = None
        self.enabled = enabled and _rich_available()

    def __enter__(self) -> ProgressDisplay:
        if self.enabled:
            self._progress = build_progress()
            self._progress.start()
            self._task = self._progress.add_task(
                short_label(self.label), total=self.total, stats=self._stats(0.0)
            )
        if self.enabled or self.poll is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="metalab-progress")
            self._thread.start()
        return self

    def _stats(self, rate: float) -> str:
        return stats_text(self.counts, self.total, rate)

    def refresh(self) -> None:
        """Redraw the bar with the latest counts (polled from journals on a cluster)."""
        if self.poll is not None:
            ok, bad = self.poll()
            self.counts.success, self.counts.failed = ok, bad

    def _render(self, t0: float) -> None:
        if self._progress is None:
            return
        done = self.counts.done
        elapsed = max(time.monotonic() - t0, 1e-9)
        self._progress.update(self._task, completed=done, stats=self._stats(done / elapsed))

    def _loop(self) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(0.125):
            try:
                self.refresh()
                self._render(t0)
            except Exception:  # never let the display break a sweep
                pass

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            self.refresh()
        except Exception:
            pass
        if self._progress is not None:
            self._render(time.monotonic() - 1)
            self._progress.stop()


#: Longest sweep label on the bar; longer names are cut with an ellipsis.
LABEL_WIDTH = 14


def short_label(label: str) -> str:
    """``label`` cut to :data:`LABEL_WIDTH` characters (the bar must fit 80 columns)."""
    return label if len(label) <= LABEL_WIDTH else label[: LABEL_WIDTH - 1] + "\u2026"


def stats_text(counts: Counts, total: int, rate: float) -> str:
    """``5678/10000 123 failed 4567 skipped 12/s``; zero failed/skipped counts left out."""
    parts = [f"{counts.done}/{total}"]
    if counts.failed:
        parts.append(f"[red]{counts.failed} failed[/]")
    if counts.skipped:
        parts.append(f"[dim]{counts.skipped} skipped[/]")
    parts.append(f"{rate:,.0f}/s" if rate >= 1 or rate == 0 else f"{rate:.2f}/s")
    return " ".join(parts)


def build_progress(console: Any = None) -> Any:
    """The rich ``Progress`` of a sweep: fits an 80-column terminal without cutting fields.

    The bar takes the width the text leaves (at least a few cells); the counts, the
    elapsed time and the estimate are never truncated.
    """
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Column

    def fixed() -> Column:
        return Column(no_wrap=True, overflow="ignore")

    return Progress(
        TextColumn("[bold]{task.description}", table_column=fixed()),
        BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=4)),
        TextColumn("{task.fields[stats]}", table_column=fixed()),
        TimeElapsedColumn(table_column=fixed()),
        TextColumn("eta", table_column=fixed()),
        TimeRemainingColumn(table_column=fixed()),
        console=console,
        expand=True,
        transient=False,
        refresh_per_second=8,
    )


_warned = False


def _rich_available() -> bool:
    global _warned
    try:
        import rich  # noqa: F401
    except ImportError:
        if not _warned:
            print(
                "metalab: progress=True needs rich; install it with: pip install 'metalab[rich]'",
                file=sys.stderr,
            )
            _warned = True
        return False
    return True
