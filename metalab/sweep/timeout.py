"""Runs with a time limit: each run executes in a forked child process that can be killed.

Used by :mod:`metalab.sweep.partition` only when ``run(..., timeout=seconds)`` is given; the
default path runs operations in the worker itself and never forks.

One child per partition runs that partition's runs one by one (a fork costs ~1-5 ms,
paid once per partition and again after each overrun). The parent sends
``(run_id, params, replicate)`` over a socket and waits up to ``timeout`` seconds for
the outcome line ``[run_id, status, t0, t1, metrics, extra]``. Artifacts are written by
the child straight into the store, as in the no-timeout path. On overrun the child is
killed (SIGKILL), the run is recorded with status ``"timeout"``, and a fresh child takes
the next run. A child that dies in a run (segfault, ``os._exit``) is restarted and the
run tried again; after ``max_worker_deaths`` deaths it is recorded ``failed`` with error
type ``WorkerDied``.

``os.fork`` is used directly (not ``multiprocessing.Process``) because Dask worker
processes are daemonic and may not start ``multiprocessing`` children.
"""

from __future__ import annotations

import os
import signal
import socket
import warnings
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from ..seeds import SeedBundle
from ..store.records import TIMEOUT_ERROR, TIMEOUT_STATUS, WORKER_DIED, error_outcome, now_us

if TYPE_CHECKING:
    from .partition import SweepTask


def _child_main(conn: Connection, task: SweepTask, context: Any) -> None:
    """The child's loop: receive a run, execute it, send its outcome back."""
    from .partition import run_one

    bundles: dict[int, SeedBundle] = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        run_id, params, rep = msg
        bundle = bundles.get(rep)
        if bundle is None:
            bundle = bundles[rep] = SeedBundle(task.seed_base, (rep,))
        out = run_one(task, run_id, params, bundle, context)
        try:
            conn.send(out)
        except Exception as exc:  # an unpicklable metric or extra
            t = now_us()
            conn.send(
                error_outcome(
                    run_id,
                    "failed",
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
    task
        The sweep task (operation, store, retries, ``timeout`` in seconds).
    context
        The frozen context; the child inherits it through ``fork``.
    """

    def __init__(self, task: SweepTask, context: Any) -> None:
        if task.timeout is None:
            raise ValueError("ChildRunner needs task.timeout")
        self.task = task
        self.context = context
        self.timeout = float(task.timeout)
        self.pid: int | None = None
        self.conn: Connection | None = None
        self.forks = 0

    # child process management ------------------------------------------------
    def _start(self) -> None:
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
                _child_main(Connection(child_sock.detach()), self.task, self.context)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        child_sock.close()
        self.pid = pid
        self.conn = Connection(parent_sock.detach())
        self.forks += 1

    def _reap(self, kill: bool) -> str:
        """Stop the child (SIGKILL when ``kill``) and return how it ended."""
        pid, self.pid = self.pid, None
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if pid is None:
            return "not started"
        if kill:
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
            self._reap(kill=True)

    def __enter__(self) -> ChildRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # running -----------------------------------------------------------------
    def run(self, run_id: str, params: dict[str, Any], replicate: int) -> list[Any]:
        """Execute one run in the child; its outcome line (status may be ``"timeout"``)."""
        deaths = 0
        while True:
            if self.pid is None:
                self._start()
            assert self.conn is not None
            t0 = now_us()
            try:
                self.conn.send((run_id, params, replicate))
                ready = self.conn.poll(self.timeout)
                if ready:
                    return list(self.conn.recv())
            except (EOFError, OSError):
                ready = True  # the child died: fall through to the death handling
            t1 = now_us()
            if not ready:
                self._reap(kill=True)
                return error_outcome(
                    run_id,
                    TIMEOUT_STATUS,
                    t0,
                    t1,
                    TIMEOUT_ERROR,
                    f"the run did not finish within timeout={self.timeout:g} s; its process "
                    "was killed and the sweep went on. Raise timeout= or make the run faster",
                )
            how = self._reap(kill=True)
            deaths += 1
            if deaths >= self.task.max_worker_deaths:
                return error_outcome(
                    run_id,
                    "failed",
                    t0,
                    t1,
                    WORKER_DIED,
                    f"the process running this run died {deaths} times ({how}); it probably "
                    "crashes its process (segfault, os._exit, out of memory)",
                )
