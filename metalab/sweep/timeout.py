"""Runs with a time limit: each run executes in a forked child process that can be killed.

Used by :mod:`metalab.sweep.partition` only when ``run(..., timeout_s=seconds)`` is given; the
default path runs operations in the worker itself and never forks.

One child per partition runs that partition's runs one by one (a fork costs ~1-5 ms,
paid once per partition and again after each overrun). The parent sends
``(run_id, params, replicate)`` over a socket and waits up to ``timeout_s`` seconds for
the outcome line ``[run_id, status, t0, t1, metrics, extra]``, which the child gets by
calling the in-process run function it inherited. Artifacts are written by
the child straight into the store, as in the no-timeout path. On overrun the child is
killed (SIGKILL), the run is recorded with status ``"timeout"``, and a fresh child takes
the next run. A child that dies in a run (segfault, ``os._exit``) is restarted and the
run tried again; after ``max_deaths`` deaths it is recorded ``failed`` with error
type ``WorkerDied``.

``os.fork`` is used directly (not ``multiprocessing.Process``) because Dask worker
processes are daemonic and may not start ``multiprocessing`` children.
"""

from __future__ import annotations

import os
import signal
import socket
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ..store.records import (
    FAILED,
    TIMEOUT_ERROR,
    TIMEOUT_STATUS,
    WORKER_DIED,
    error_outcome,
    now_us,
)

#: ``execute(run_id, params, replicate) -> outcome line``: runs one run in this process.
RunFunction = Callable[[str, dict[str, Any], int], list[Any]]


def _child_main(conn: Connection, execute: RunFunction) -> None:
    """The child's loop: receive a run, execute it, send its outcome back."""
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        run_id, params, rep = msg
        out = execute(run_id, params, rep)
        try:
            conn.send(out)
        except Exception as exc:  # an unpicklable metric or extra
            t = now_us()
            conn.send(
                error_outcome(
                    run_id,
                    FAILED,
                    t,
                    t,
                    type(exc).__qualname__,
                    f"the run's outcome could not be sent back from its process: {exc}",
                )
            )


def _describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by signal {name}"
    if os.WIFEXITED(status):
        return f"exit code {os.WEXITSTATUS(status)}"
    return f"wait status {status}"


class ChildRunner:
    """Executes runs one at a time in a killable child process, with a time limit each.

    Parameters
    ----------
    execute
        Runs one run in-process (with retries) and returns its outcome line; the
        child inherits it, with the operation and context, through ``fork``.
    timeout_s
        Seconds one run may take before its child is killed.
    max_deaths
        Deaths of the child in one run after which the run is recorded ``failed``
        (error type ``WorkerDied``) instead of tried again.
    """

    def __init__(self, execute: RunFunction, *, timeout_s: float, max_deaths: int) -> None:
        self.execute = execute
        self.timeout_s = float(timeout_s)
        self.max_deaths = max_deaths
        self.pid: int | None = None
        self.conn: Connection | None = None

    # child process management ------------------------------------------------
    def _start(self) -> Connection:
        parent_sock, child_sock = socket.socketpair()
        with warnings.catch_warnings():
            # Python >= 3.12 warns about fork() in a multi-threaded process.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                parent_sock.close()
                # A terminal Ctrl-C reaches the whole process group: the parent decides.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                _child_main(Connection(child_sock.detach()), self.execute)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        child_sock.close()
        self.pid = pid
        self.conn = Connection(parent_sock.detach())
        return self.conn

    def _reap(self) -> str:
        """Kill the child (SIGKILL) and return how it ended."""
        pid, self.pid = self.pid, None
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if pid is None:
            return "not started"
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return "unknown"
        return _describe_exit(status)

    def close(self) -> None:
        """Stop the child (it holds no state worth keeping)."""
        if self.pid is not None:
            self._reap()

    # running -----------------------------------------------------------------
    def _attempt(self, run_id: str, params: dict[str, Any], replicate: int) -> list[Any] | bool:
        """Send one run to the child: its outcome, or whether the child ended without one
        (``True``: it died, ``False``: it overran the time limit)."""
        conn = self.conn if self.conn is not None else self._start()
        try:
            conn.send((run_id, params, replicate))
            if conn.poll(self.timeout_s):
                return list(conn.recv())
        except (EOFError, OSError):
            return True
        return False

    def run(self, run_id: str, params: dict[str, Any], replicate: int) -> list[Any]:
        """Execute one run in the child; its outcome line (status may be ``"timeout"``)."""
        deaths = 0
        while True:
            t0 = now_us()
            got = self._attempt(run_id, params, replicate)
            if isinstance(got, list):
                return got
            t1 = now_us()
            how = self._reap()
            if not got:
                return error_outcome(
                    run_id,
                    TIMEOUT_STATUS,
                    t0,
                    t1,
                    TIMEOUT_ERROR,
                    f"the run did not finish within timeout={self.timeout_s:g} s; its process "
                    "was killed and the sweep went on. Raise timeout= or make the run faster",
                )
            deaths += 1
            if deaths >= self.max_deaths:
                return error_outcome(
                    run_id,
                    FAILED,
                    t0,
                    t1,
                    WORKER_DIED,
                    f"the process running this run died {deaths} times ({how}); it probably "
                    "crashes its process (segfault, os._exit, out of memory)",
                )
