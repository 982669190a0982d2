"""Whether a sweep still runs: its driver's pid on this host, or its heartbeat elsewhere.

A sweep file (``sweeps/<sweep>.json``) gets ``ended`` and ``status`` when its driver
finishes the sweep, whatever ended it.  A driver that was killed (SIGKILL, a lost node)
never writes them; its sweep must not read as "running" forever.  While a sweep runs,
its driver touches the sweep file every :data:`HEARTBEAT_S` seconds (the file's mtime
is the heartbeat; one ``utime`` call, no write).  A reader then tells:

* ``ended`` present: the recorded ``status`` (finished, incomplete, interrupted);
* a driver on this host: ``running`` while its pid lives (and is not a zombie, nor a
  newer process that reuses the pid), else ``interrupted``;
* a driver on another host: ``running`` while the heartbeat is younger than
  :data:`STALE_S`, else ``interrupted``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from .journal import HOST
from .processes import process_alive
from .records import SWEEP_INTERRUPTED

__all__ = ["HEARTBEAT_S", "RUNNING", "STALE_S", "Heartbeat", "sweep_state"]

#: Seconds between two touches of a running sweep's file.
HEARTBEAT_S = 30.0
#: A sweep of another host whose file was not touched for this long is interrupted.
STALE_S = 10 * HEARTBEAT_S
#: The state of a sweep whose driver is alive.
RUNNING = "running"


def driver_of(info: dict[str, Any]) -> tuple[str | None, int | None]:
    """(host, pid) of a sweep's driver, from the sweep file (or its provenance)."""
    prov = info.get("provenance")
    prov = prov if isinstance(prov, dict) else {}
    host = info.get("host", prov.get("hostname"))
    pid = info.get("pid", prov.get("pid"))
    return (
        host if isinstance(host, str) else None,
        pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
    )


def local_driver_alive(info: dict[str, Any]) -> bool | None:
    """Whether the driver a sweep file names lives: None when it is not a process of
    this host (or the file names none), so only its heartbeat can tell."""
    host, pid = driver_of(info)
    if host != HOST or pid is None:
        return None
    started = info.get("started")
    return process_alive(pid, started if isinstance(started, (int, float)) else None)


def sweep_state(info: dict[str, Any], mtime: float | None, now: float | None = None) -> str:
    """``running``, ``interrupted`` or the recorded end status of one sweep file.

    ``mtime`` is the sweep file's modification time (its heartbeat).
    """
    if "ended" in info:
        return str(info.get("status") or "finished")
    alive = local_driver_alive(info)
    if alive is not None:
        return RUNNING if alive else SWEEP_INTERRUPTED
    now = time.time() if now is None else now
    if mtime is not None and now - mtime > STALE_S:
        return SWEEP_INTERRUPTED
    return RUNNING


class Heartbeat:
    """Touch a sweep file every ``interval`` seconds from a daemon thread, until stopped."""

    def __init__(self, path: Path, interval: float = HEARTBEAT_S) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="metalab-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        """Start beating; returns self."""
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                os.utime(self.path)
            except OSError:
                pass  # replaced meanwhile (atomic rewrite) or store gone: next beat

    def stop(self) -> None:
        """Stop beating (waits for the thread, at most one beat)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
