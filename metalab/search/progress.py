"""The progress bar of a search: trials told out of ``n_trials``, and the best so far."""

from __future__ import annotations

import math
import sys
from typing import Any

from ..sweep.progress import build_progress, short_label


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        print(
            "metalab: progress=True needs rich; install it with: pip install 'metalab[rich]'",
            file=sys.stderr,
        )
        return False
    return True


def best_text(metric: str, best: float | None) -> str:
    """``best val_loss 0.123`` (``best val_loss -`` before any trial succeeded)."""
    if best is None or math.isnan(best):
        return f"best {metric} -"
    return f"best {metric} {best:.4g}"


class SearchProgress:
    """A rich bar updated by the driver after each trial is told (``enabled=False``: none)."""

    def __init__(self, total: int, metric: str, *, enabled: bool, label: str) -> None:
        self.total, self.metric, self.label = total, metric, label
        self.enabled = enabled and _rich_available()
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> SearchProgress:
        if self.enabled:
            self._progress = build_progress()
            self._progress.start()
            self._task = self._progress.add_task(
                short_label(self.label), total=self.total, stats=self.stats(0, None)
            )
        return self

    def stats(self, done: int, best: float | None) -> str:
        """``12/100 trials best loss 0.5``."""
        return f"{done}/{self.total} trials {best_text(self.metric, best)}"

    def update(self, done: int, best: float | None) -> None:
        """Show ``done`` trials told and the best objective so far."""
        if self._progress is not None:
            self._progress.update(self._task, completed=done, stats=self.stats(done, best))

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
