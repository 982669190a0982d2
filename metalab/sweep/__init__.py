"""Executing a sweep: the front door ``run`` and the pipeline behind it.

``sweep`` (the front door and the sweep's life as named steps), ``planning``
(descriptors, resume filter, partitions), ``shipping`` (operation and context through
the store to cluster workers), ``compute`` (the partition tasks on the scheduler,
resubmitting lost ones), ``partition`` (the task that runs one partition on a worker),
``timeout`` (runs in a killable child process), ``progress`` (counts and the bar) and
``watchdog`` (bounded waits for workers).

Imports go one way: ``sweep`` -> ``planning``, ``shipping``, ``compute``,
``partition`` -> ``timeout``; ``compute`` -> ``watchdog``.
"""

from __future__ import annotations

from .sweep import run

__all__ = ["run"]
