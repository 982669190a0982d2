"""How an interrupted sweep ends a script: one paragraph on stderr and exit status 130.

When a sweep is stopped (Ctrl-C, SIGTERM), :func:`metalab.run` raises
:class:`~metalab.RunInterrupted`.  A script that does not catch it should end the way
``metalab run`` does (and the way Python ends on a plain Ctrl-C): status 130, no
traceback, the command that resumes the sweep.  Python only exits 130 for an uncaught
``KeyboardInterrupt`` of that exact class, so :func:`sweep_interrupted` installs (in
the main thread, at the moment it is raised) a ``sys.excepthook`` that prints the
paragraph and exits 130 for ``RunInterrupted`` and hands every other exception to the
hook that was there before.

A stopped sweep also stops its partition tasks before their next run (:class:`StopFlag`):
threads and worker processes do not run the rest of their partitions after Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from types import TracebackType
from typing import Any

from .errors import RunInterrupted

__all__ = ["EXIT_INTERRUPTED", "StopFlag", "sweep_interrupted"]

#: Exit status after Ctrl-C or SIGTERM (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


class _ExitHook:
    """``sys.excepthook`` for a script whose sweep was interrupted; removes itself."""

    def __init__(self, previous: object) -> None:
        self.previous = previous

    def __call__(
        self,
        exc_type: type[BaseException],
        exc: BaseException,
        tb: TracebackType | None,
    ) -> None:
        previous = self.previous
        if sys.excepthook is self:  # only while the interrupt propagates
            sys.excepthook = previous  # type: ignore[assignment]
        if not isinstance(exc, RunInterrupted):
            if callable(previous):
                previous(exc_type, exc, tb)
            return
        sys.stderr.write(f"\nmetalab.RunInterrupted: {exc}\n")
        sys.stderr.flush()
        if sys.flags.interactive or hasattr(sys, "ps1"):
            return  # a REPL keeps running; the paragraph is enough
        # SystemExit raised by the excepthook ends the interpreter normally (atexit
        # handlers and finalizers run) with this status.
        raise SystemExit(EXIT_INTERRUPTED)


def sweep_interrupted(experiment: str, store: str, done: int) -> RunInterrupted:
    """The :class:`RunInterrupted` to raise for a stopped sweep (raise it ``from None``).

    In the main thread it also installs the hook that turns an uncaught one into a short
    paragraph and exit status 130.
    """
    exc = RunInterrupted(
        experiment=experiment,
        store=store,
        done=done,
        resume=f"metalab.run(exp, store={store!r}, resume=True)",
    )
    if threading.current_thread() is threading.main_thread() and not isinstance(
        sys.excepthook, _ExitHook
    ):
        sys.excepthook = _ExitHook(sys.excepthook)
    return exc


class StopFlag:
    """Tells a sweep's partition tasks to stop before their next run.

    Tasks in the driver's process (threads) see :meth:`set` at once. Tasks in other
    processes (Dask workers) see a marker file, ``path``, which the driver creates; they
    look for it at most every :attr:`CHECK_S` seconds, so a run pays no system call. The
    marker is named like a temp file (``.tmp-*``): readers ignore it and the store's
    clean-up removes it after an hour.

    Parameters
    ----------
    path
        The marker file, for tasks that run in other processes; ``None`` in-process.
    """

    #: Seconds between two looks for the marker file in a worker process.
    CHECK_S = 0.05

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._event = threading.Event()
        self._next_check = 0.0

    def set(self) -> None:
        """Stop every task of the sweep before its next run (best effort for the file)."""
        self._event.set()
        if self.path is not None:
            with contextlib.suppress(OSError):  # a full or read-only disk: threads still stop
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644))

    def is_set(self) -> bool:
        """Whether the sweep was stopped (cheap: called before every run)."""
        if self._event.is_set():
            return True
        if self.path is None:
            return False
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.CHECK_S
        if os.path.exists(self.path):
            self._event.set()
            return True
        return False

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._event = threading.Event()
        self._next_check = 0.0
