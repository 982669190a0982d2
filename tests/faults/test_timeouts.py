"""``timeout=`` really stops a run: its whole process group dies, and a crash is a crash.

The hung run starts a real ``sleep 1000`` subprocess and writes its pid to a side channel;
after the sweep that process must be gone, on every executor. A run whose process dies
before its deadline (``os._exit``, SIGKILL, a real segfault, even with a grandchild that
keeps the process's pipe open) is recorded ``failed`` (``WorkerDied``, with the exit code
or signal), never ``timeout``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import metalab

#: Bound on waiting for a killed process to disappear (not a test threshold).
WAIT_S = 60.0


def _exp(op, n: int, name: str = "t") -> metalab.Experiment:
    return metalab.Experiment(name=name, operation=op, params=metalab.grid(x=list(range(n))))


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie nobody has reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


def _spawning_op(pids: Path):
    @metalab.operation(name="spawns")
    def op(params, capture):
        if params["x"] == 1:
            # A hung helper process: it must die with the timed-out run.
            p = subprocess.Popen(["sleep", "1000"])
            with open(pids, "a") as f:
                f.write(f"{p.pid}\n")
            time.sleep(1000)
        capture.metric("y", params["x"])

    return op


@pytest.mark.parametrize(
    "make_executor",
    [
        pytest.param(lambda: None, id="default"),
        pytest.param(lambda: metalab.ThreadExecutor(2), id="threads"),
        pytest.param(lambda: metalab.ProcessExecutor(2), id="processes", marks=pytest.mark.cluster),
    ],
)
def test_timeout_kills_the_processes_the_run_started(tmp_path, make_executor):
    pids = tmp_path / "pids"
    res = metalab.run(
        _exp(_spawning_op(pids), 4),
        store=tmp_path / "s",
        executor=make_executor(),
        timeout=3,
    )
    runs = {r.params["x"]: r for r in res}
    assert runs[1].status == "timeout" and runs[1].error["type"] == "Timeout"
    assert {runs[x].status for x in (0, 2, 3)} == {"success"}
    (pid,) = [int(p) for p in pids.read_text().split()]
    assert _wait_gone(pid), f"the run's subprocess {pid} outlived its timeout"


def _crashing_op():
    @metalab.operation(name="crashes")
    def op(params, capture):
        x = params["x"]
        if x == 1:
            os._exit(7)
        if x == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        if x == 3:
            ctypes.string_at(0)  # a real segfault
        if x == 4:
            # A forked grandchild inherits the run process's end of its pipe: the pipe
            # stays open after the run's process exits.
            if os.fork() == 0:
                time.sleep(1000)
                os._exit(0)
            os._exit(5)
        capture.metric("y", x)

    return op


@pytest.mark.parametrize(
    "make_executor",
    [
        pytest.param(lambda: None, id="default"),
        pytest.param(lambda: metalab.ThreadExecutor(2), id="threads"),
    ],
)
def test_a_crash_before_the_deadline_is_failed_not_timeout(tmp_path, make_executor):
    # A generous limit: the crash must be seen when it happens, not at the deadline.
    res = metalab.run(
        _exp(_crashing_op(), 6), store=tmp_path / "s", executor=make_executor(), timeout=600
    )
    runs = {r.params["x"]: r for r in res}
    assert sorted(runs) == list(range(6))
    assert {runs[x].status for x in (0, 5)} == {"success"}
    for x in (1, 2, 3, 4):
        assert runs[x].status == "failed", runs[x].error
        assert runs[x].error["type"] == "WorkerDied"
    assert "exited with code 7" in runs[1].error["message"]
    assert "killed by signal SIGKILL" in runs[2].error["message"]
    assert "killed by signal SIGSEGV" in runs[3].error["message"]
    assert "exited with code 5" in runs[4].error["message"]
    # The duration is the time to the crash, not the 600 s limit.
    assert all(runs[x].duration_s < 300 for x in (1, 2, 3, 4))
