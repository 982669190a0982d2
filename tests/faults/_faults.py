"""Helpers of the fault-injection suite: launch driver subprocesses, count executions."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import metalab

DRIVER = Path(__file__).with_name("driver.py")
#: Upper bound on how long a helper waits for an event (not a test threshold).
WAIT_S = 120.0
#: Finished runs a killed worker or driver may lose: the journal flushes every few runs
#: (``SweepTask.flush_every``) plus the run in flight.
MAX_LOST_PER_PROCESS = 5


def start_driver(store: Path, log: Path, *args: str) -> subprocess.Popen[str]:
    """Start ``driver.py`` in its own session (so signals reach only it)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(DRIVER), "--store", str(store), "--log", str(log), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def executions(log: Path) -> list[int]:
    """The x of every execution so far, in order (complete lines only)."""
    try:
        data = log.read_text()
    except FileNotFoundError:
        return []
    return [int(line) for line in data.split("\n")[:-1] if line]


def counts(log: Path) -> collections.Counter[int]:
    return collections.Counter(executions(log))


def wait_for_executions(log: Path, n: int, proc: subprocess.Popen[str] | None = None) -> None:
    """Block until the side channel shows at least ``n`` executions."""
    deadline = time.monotonic() + WAIT_S
    while len(executions(log)) < n:
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"driver ended early ({proc.returncode}):\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {n} executions after {WAIT_S} s")
        time.sleep(0.01)


def wait_for_text(proc: subprocess.Popen[str], text: str) -> str:
    """Read the driver's stderr until a line contains ``text``; returns what was read."""
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} never appeared on stderr:\n{''.join(seen)}")


def finish(proc: subprocess.Popen[str], wait_s: float = WAIT_S) -> tuple[int, str, str]:
    """Wait for a driver (killed with its group after ``wait_s``); returns
    (returncode, stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=wait_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"driver did not end:\n{out}\n{err}") from None
    return proc.returncode, out, err


def run_driver(store: Path, log: Path, *args: str) -> tuple[int, str, str]:
    return finish(start_driver(store, log, *args))


def records(store: Path) -> list[dict]:
    """Current records of a store: (x, status, attempt) per run, plus the raw count."""
    res = metalab.load_results(store)
    return [
        {"x": r.params["x"], "status": r.status, "attempt": r.attempt, "run_id": r.run_id}
        for r in res
    ]


def recorded_xs(store: Path) -> list[int]:
    return sorted(r["x"] for r in records(store))
