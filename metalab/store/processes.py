"""Is a process of this host alive? (Drivers named by sweep files and leases.)"""

from __future__ import annotations

import os

from .journal import _is_zombie


def process_alive(pid: int, started: float | None = None) -> bool:
    """Whether process ``pid`` of this host lives (and, if known, started before ``started``)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except (OverflowError, OSError):
        return False
    if _is_zombie(pid):
        return False
    begun = _process_start_time(pid)
    # A process that started after the sweep did holds a reused pid: the driver is gone.
    return not (begun is not None and started is not None and begun > started + 2.0)


def _process_start_time(pid: int) -> float | None:
    """Start time (epoch seconds) of a process, from /proc (Linux; elsewhere None)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as f:
            btime = next(int(ln.split()[1]) for ln in f if ln.startswith(b"btime"))
        return btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
