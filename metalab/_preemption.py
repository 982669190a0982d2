"""When should a run checkpoint and stop: SIGTERM reached its process, or the worker's
``lifetime`` ends soon (``capture.checkpoint_due()``).

Worker processes (a Dask worker: ``ProcessExecutor``, ``SlurmExecutor``...): the first
partition task installs, in the worker's main thread, a SIGTERM handler that only sets
a flag.  While a partition runs, a SIGTERM therefore lets the run checkpoint and return;
the partition starts no further run, and once no partition runs in the process any
more the signal is passed on to the handler that was there before (the worker closes
as it would have).  A SIGTERM while no partition runs is passed on at once.

In-process executors (``LocalExecutor``, ``ThreadExecutor``): the driver turns SIGTERM
into Ctrl-C (see ``metalab.sweep.sweep``), except for the first SIGTERM while a run
that asks ``checkpoint_due()`` is running: that one only sets the flag, the run
checkpoints and returns, and the sweep then ends as interrupted.

A worker's lifetime (``dask worker --lifetime``, ``worker_lifetime=`` of the jobqueue
executors) ends at the worker process's start time plus ``Worker.lifetime`` (the
stagger already drawn): the process starts a moment before the worker, so the estimate
errs on the early side.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = [
    "DEFAULT_MARGIN_S",
    "due",
    "lifetime_left",
    "note_checkpointing",
    "note_sigterm",
    "partition_running",
    "reset",
    "sigterm_received",
]

#: Seconds before the end of a worker's lifetime at which ``checkpoint_due()`` turns true.
DEFAULT_MARGIN_S = 60.0

_TERM = threading.Event()
_lock = threading.Lock()
_state: dict[str, Any] = {"active": 0, "installed": False, "old": None, "aware": False}
_deadline: dict[int, float | None] = {}


def sigterm_received() -> bool:
    """Whether this process received SIGTERM while it ran partitions."""
    return _TERM.is_set()


def note_sigterm() -> None:
    """Record a SIGTERM (called by the signal handlers)."""
    _TERM.set()


def note_checkpointing() -> None:
    """A run in this process asked ``checkpoint_due()``: it can stop on SIGTERM."""
    _state["aware"] = True


def checkpointing() -> bool:
    """Whether a run of this process asked ``checkpoint_due()`` (it handles SIGTERM)."""
    return bool(_state["aware"])


def reset() -> None:
    """Forget an earlier SIGTERM (the driver, at the start of an in-process sweep)."""
    _TERM.clear()
    _state["aware"] = False


def _worker() -> Any:
    if "distributed" not in sys.modules:  # never import distributed just to ask
        return None
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:
        return None


def lifetime_left() -> float | None:
    """Seconds until this Dask worker's ``lifetime`` ends (None: no worker or no lifetime)."""
    worker = _worker()
    if worker is None or not getattr(worker, "lifetime", None):
        return None
    pid = os.getpid()
    if pid not in _deadline:
        try:
            import psutil  # type: ignore[import-untyped]  # a dependency of distributed

            started = psutil.Process(pid).create_time()
        except Exception:  # no psutil, or /proc unreadable: no lifetime estimate
            _deadline[pid] = None
        else:
            _deadline[pid] = started + float(worker.lifetime)
    end = _deadline[pid]
    return None if end is None else end - time.time()


def due(margin_s: float = DEFAULT_MARGIN_S) -> bool:
    """SIGTERM received, or the worker's lifetime ends within ``margin_s`` seconds."""
    if _TERM.is_set():
        return True
    left = lifetime_left()
    return left is not None and left <= margin_s


# -- the worker's SIGTERM handler -----------------------------------------------------


def _handler(signum: int, frame: Any) -> None:
    _TERM.set()
    with _lock:
        idle = _state["active"] == 0
    if idle:
        _pass_on()


def _pass_on() -> None:
    """Main thread: give SIGTERM to the handler that was there before ours."""
    old = _state["old"]
    _state["installed"] = False
    signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install() -> None:
    if threading.current_thread() is not threading.main_thread() or _state["installed"]:
        return
    _state["old"] = signal.signal(signal.SIGTERM, _handler)
    _state["installed"] = True


def _install_in_worker(worker: Any) -> None:
    """Install the handler from the worker's event loop (its main thread), and wait."""
    done = threading.Event()

    def install() -> None:
        try:
            _install()
        finally:
            done.set()

    try:
        worker.loop.add_callback(install)
    except Exception:  # a closing worker: its partitions end soon anyway
        return
    done.wait(10)


@contextlib.contextmanager
def partition_running() -> Iterator[None]:
    """While a partition task runs in a worker process: SIGTERM only sets the flag."""
    worker = _worker()
    if worker is not None and not _state["installed"]:
        _install_in_worker(worker)
    with _lock:
        _state["active"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["active"] -= 1
            last = _state["active"] == 0
        if last and _TERM.is_set() and _state["installed"] and worker is not None:
            with contextlib.suppress(Exception):  # the worker may be closing already
                worker.loop.add_callback(_pass_on)
