"""Capturing a run's stdout, stderr and ``logging`` records into its log."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import Capture


class _ListHandler(logging.Handler):
    def __init__(self, cap: Capture) -> None:
        super().__init__(logging.DEBUG)
        self.cap = cap

    def emit(self, record: logging.LogRecord) -> None:
        if self.cap._logs is None:
            self.cap._logs = []
        self.cap._logs.append(
            [record.created, record.levelname.lower(), f"{record.name}: {record.getMessage()}"]
        )


@contextlib.contextmanager
def captured_output(cap: Capture) -> Iterator[None]:
    """Send stdout/stderr and logging records of the block to ``cap``'s log."""
    out, err = io.StringIO(), io.StringIO()
    handler = _ListHandler(cap)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        yield
    finally:
        sys.stdout, sys.stderr = old_out, old_err
        root.removeHandler(handler)
        root.setLevel(old_level)
        now = time.time()
        for stream, text in (("stdout", out.getvalue()), ("stderr", err.getvalue())):
            if text:
                if cap._logs is None:
                    cap._logs = []
                cap._logs.extend([now, stream, line] for line in text.rstrip("\n").split("\n"))
