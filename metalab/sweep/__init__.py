"""Executing a sweep: the front door ``run`` and the pipeline behind it.

``sweep`` (the front door and the sweep's life), ``planning`` (descriptors, resume
filter, partitions), ``partition`` (the task that runs one partition on a worker),
``timeout`` (runs in a killable child process), ``progress`` (counts and the bar),
``shipping`` (operation and context through the store to workers) and ``watchdog``
(bounded waits for workers).
"""

from __future__ import annotations

from .sweep import run

__all__ = ["run"]
