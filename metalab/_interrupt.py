"""How an interrupted sweep ends a script: one paragraph on stderr and exit status 130.

When a sweep is stopped (Ctrl-C, SIGTERM), :func:`metalab.run` raises
:class:`~metalab.RunInterrupted`.  A script that does not catch it should end the way
``metalab run`` does (and the way Python ends on a plain Ctrl-C): status 130, no
traceback, the command that resumes the sweep.  Python only exits 130 for an uncaught
``KeyboardInterrupt`` of that exact class, so :func:`sweep_interrupted` installs (in
the main thread, at the moment it is raised) a ``sys.excepthook`` that prints the
paragraph and exits 130 for ``RunInterrupted`` and hands every other exception to the
hook that was there before.
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType

from .errors import RunInterrupted

__all__ = ["EXIT_INTERRUPTED", "sweep_interrupted"]

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
