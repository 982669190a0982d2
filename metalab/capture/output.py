"""Capturing a run's stdout, stderr and ``logging`` records into its log.

While at least one run captures output, ``sys.stdout`` and ``sys.stderr`` are replaced
by routers that send each write to the capture of the thread that made it (so runs on a
thread pool keep their own output apart).  Writes from a thread without a capture go to
the only active capture when there is exactly one (threads the operation started), and
otherwise to the original stream.  ``logging`` records are collected from the run's own
thread.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from . import Capture

_lock = threading.RLock()
_active: dict[int, _RunOutput] = {}  # thread ident -> the run output it captures
_saved: dict[str, Any] = {}  # original streams and root level while any capture is active


class _RunOutput:
    """The partial lines of one run's stdout and stderr, appended to its log line by line."""

    def __init__(self, cap: Capture) -> None:
        self.cap = cap
        self.partial = {"stdout": "", "stderr": ""}

    def write(self, stream: str, text: str) -> None:
        buf = self.partial[stream] + text
        if "\n" in buf:
            *lines, buf = buf.split("\n")
            now = time.time()
            if self.cap._logs is None:
                self.cap._logs = []
            self.cap._logs.extend([now, stream, line] for line in lines)
        self.partial[stream] = buf

    def flush_partial(self) -> None:
        for stream, buf in self.partial.items():
            if buf:
                if self.cap._logs is None:
                    self.cap._logs = []
                self.cap._logs.append([time.time(), stream, buf])
        self.partial = {"stdout": "", "stderr": ""}


class _Router:
    """Stands in for ``sys.stdout`` / ``sys.stderr`` while runs capture their output."""

    def __init__(self, stream: str, original: TextIO) -> None:
        self._stream = stream
        self._original = original

    def _target(self) -> _RunOutput | None:
        out = _active.get(threading.get_ident())
        if out is None and len(_active) == 1:
            out = next(iter(_active.values()), None)
        return out

    def write(self, text: str) -> int:
        out = self._target()
        if out is None:
            return self._original.write(text)
        out.write(self._stream, str(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._target() is None:
            self._original.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, ... of the real stream
        return getattr(self._original, name)


class _ThreadHandler(logging.Handler):
    """Keeps the ``logging`` records emitted by one thread in one run's log."""

    def __init__(self, cap: Capture, thread: int) -> None:
        super().__init__(logging.DEBUG)
        self.cap = cap
        self.thread = thread

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        try:
            msg = record.getMessage()
        except Exception:
            msg = f"{record.msg} {record.args}"
        if record.exc_info:
            msg += "\n" + logging.Formatter().formatException(record.exc_info)
        if self.cap._logs is None:
            self.cap._logs = []
        self.cap._logs.append([record.created, record.levelname.lower(), f"{record.name}: {msg}"])


@contextlib.contextmanager
def captured_output(cap: Capture) -> Iterator[None]:
    """Send the block's stdout/stderr and logging records to ``cap``'s log."""
    ident = threading.get_ident()
    out = _RunOutput(cap)
    handler = _ThreadHandler(cap, ident)
    root = logging.getLogger()
    with _lock:
        if not _active:
            _saved["stdout"], _saved["stderr"] = sys.stdout, sys.stderr
            _saved["level"] = root.level
            sys.stdout = _Router("stdout", sys.stdout)
            sys.stderr = _Router("stderr", sys.stderr)
            if root.level > logging.INFO or root.level == logging.NOTSET:
                root.setLevel(logging.INFO)
        _active[ident] = out
        root.addHandler(handler)
    try:
        yield
    finally:
        with _lock:
            root.removeHandler(handler)
            _active.pop(ident, None)
            out.flush_partial()
            if not _active:
                sys.stdout, sys.stderr = _saved.pop("stdout"), _saved.pop("stderr")
                root.setLevel(_saved.pop("level"))
