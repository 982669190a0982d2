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
type ``WorkerDied`` and how the process ended ("exited with code 7", "was killed by
signal SIGSEGV"), never ``"timeout"``: the parent watches the child's exit as well as
its pipe, which a grandchild may hold open.

The child leads its own process group, and every kill is a SIGKILL of that group, so
the processes a run started (a hung ``subprocess``) die with it. A process that left
the group on purpose (``setsid``) is out of reach. The child also asks the kernel
(Linux ``PR_SET_PDEATHSIG``) to be killed when the thread that forked it ends, so a
driver killed without warning leaves no child behind.

``os.fork`` is used directly (not ``multiprocessing.Process``) because Dask worker
processes are daemonic and may not start ``multiprocessing`` children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ..store.atomic import disk_full_error, is_disk_full
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

#: The key of the child's answer when a run's write failed on a full disk.
_DISK_FULL = "disk_full"
#: Seconds between two checks that the child still lives while a run is in it.
_LIVENESS_S = 0.05
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child (Linux): SIGKILL it when the thread that forked it ends."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):  # best effort: the pipe's EOF also ends the child
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _kill_group(pid: int) -> None:
    """SIGKILL the child's process group (the child and what it started), then the child."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


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
        try:
            out = execute(run_id, params, rep)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            # The parent raises it: a full disk stops the sweep, it is not a crash.
            conn.send({_DISK_FULL: [exc.errno, os.fspath(exc.filename or "")]})
            return
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
    """How a process ended, for a run's error message ("exited with code 7"...)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"was killed by signal {name} ({sig})"
    if os.WIFEXITED(status):
        return f"exited with code {os.WEXITSTATUS(status)}"
    return f"ended with wait status {status}"


class ChildRunner:
    """Executes runs one at a time in a killable child process, with a time limit each.

    Parameters
    ----------
    execute
        Runs one run in-process (with retries) and returns its outcome line; the
        child inherits it, with the operation and context, through ``fork``.
    timeout_s
        Seconds one run may take before its child (and its process group) is killed.
    max_deaths
        Deaths of the child in one run after which the run is recorded ``failed``
        (error type ``WorkerDied``) instead of tried again.
    artifacts
        The store's ``artifacts`` folder, named when a run's write fails on a full disk.
    """

    def __init__(
        self, execute: RunFunction, *, timeout_s: float, max_deaths: int, artifacts: str = ""
    ) -> None:
        self.execute = execute
        self.artifacts = artifacts
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
                os.setpgid(0, 0)  # its own group: a timeout kills what the run started
                _die_with_parent()
                parent_sock.close()
                # A terminal Ctrl-C reaches the whole process group: the parent decides.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                _child_main(Connection(child_sock.detach()), self.execute)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        # Also from the parent, so that a kill right after the fork finds the group.
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        child_sock.close()
        self.pid = pid
        self.conn = Connection(parent_sock.detach())
        return self.conn

    def _reap(self) -> str:
        """Kill the child's process group (SIGKILL) and return how the child ended."""
        pid, self.pid = self.pid, None
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if pid is None:
            return "was not started"
        # Also when the child died: what it started may live on. The child is reaped
        # only now, so its pid (and its group's id) cannot have been reused meanwhile.
        _kill_group(pid)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return "ended (how is unknown)"
        return _describe_exit(status)

    def _exited(self) -> bool:
        """Whether the child has ended (it is left unreaped, for :meth:`_reap`)."""
        if self.pid is None:
            return True
        try:
            ended = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return ended is not None

    def close(self) -> None:
        """Stop the child (it holds no state worth keeping) and what it started."""
        if self.pid is not None:
            self._reap()

    # running -----------------------------------------------------------------
    def _wait(self, conn: Connection) -> bool | None:
        """Wait for the child's answer: ``True`` when it is there, ``False`` when the
        child ended without one, ``None`` when the time limit passed."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            left = deadline - time.monotonic()
            # A short wait, then a look at the child: a grandchild can hold the pipe
            # open after the child died, so the pipe's EOF alone does not tell.
            if conn.poll(max(0.0, min(left, _LIVENESS_S))):
                return True
            if self._exited():
                return conn.poll(0)  # it may have answered just before it ended
            if left <= 0:
                return None

    def _attempt(
        self, run_id: str, params: dict[str, Any], replicate: int
    ) -> list[Any] | dict[str, Any] | bool:
        """Send one run to the child: its outcome, or whether the child ended without one
        (``True``: it died, ``False``: it overran the time limit)."""
        conn = self.conn if self.conn is not None else self._start()
        try:
            conn.send((run_id, params, replicate))
            got = self._wait(conn)
            if got:
                answer = conn.recv()
                return answer if isinstance(answer, dict) else list(answer)
        except (EOFError, OSError):
            return True
        return got is False

    def run(self, run_id: str, params: dict[str, Any], replicate: int) -> list[Any]:
        """Execute one run in the child; its outcome line (status may be ``"timeout"``)."""
        deaths: list[str] = []
        while True:
            t0 = now_us()
            got = self._attempt(run_id, params, replicate)
            if isinstance(got, dict):  # the run's write failed on a full disk
                code, path = got[_DISK_FULL]
                self._reap()
                # A write without a file name in the error: the run's artifact folder.
                path = path or os.path.join(self.artifacts, run_id)
                raise disk_full_error(OSError(code, os.strerror(code)), path)
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
                    "and the processes it started were killed and the sweep went on. Raise "
                    "timeout= or make the run faster",
                )
            deaths.append(how)
            if len(deaths) >= self.max_deaths:
                return error_outcome(
                    run_id,
                    FAILED,
                    t0,
                    t1,
                    WORKER_DIED,
                    f"the run's process {how}, {len(deaths)} times in a row "
                    f"({'; '.join(deaths)}); the run probably crashes its process "
                    "(segfault, os._exit, out of memory)",
                )
