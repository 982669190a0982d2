"""Dask workers that die in a run, on a real LocalCluster (ProcessExecutor(2))."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import metalab

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _log(path: Path, x: int) -> None:
    with open(path, "a") as f:
        f.write(f"{x} {os.getpid()}\n")


def _lines(path: Path) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in (ln.split() for ln in path.read_text().splitlines())]


def _exp(op, n: int) -> metalab.Experiment:
    return metalab.Experiment(name="w", operation=op, params=metalab.grid(x=list(range(n))))


def test_runs_that_kill_their_worker_are_failed_after_two_deaths(tmp_path):
    log = tmp_path / "exec.log"

    @metalab.operation(name="killer")
    def killer(params, capture):
        _log(log, params["x"])
        if params["x"] == 3:
            os._exit(1)
        if params["x"] == 9:
            ctypes.string_at(0)  # a real segfault
        capture.metric("y", params["x"])

    res = metalab.run(
        _exp(killer, 16),
        store=tmp_path / "s",
        executor=metalab.ProcessExecutor(2),
        partition_size=4,
    )
    runs = {r.params["x"]: r for r in res}
    assert sorted(runs) == list(range(16))  # nothing lost, one record per run
    bad = {x for x, r in runs.items() if r.status != "success"}
    assert bad == {3, 9}
    for x in bad:
        assert runs[x].status == "failed"
        assert runs[x].error["type"] == "WorkerDied"
        assert "worker died" in runs[x].error["message"]
    for x in set(runs) - bad:
        assert runs[x].metrics == {"y": x}
    execs = [x for x, _ in _lines(log)]
    for x in bad:  # Dask retried it elsewhere, then metalab gave up on it
        assert 2 <= execs.count(x) <= 3
    assert set(execs) == set(range(16))


def test_worker_sigkilled_mid_run_is_retried_elsewhere(tmp_path):
    log, pidfile, flag = tmp_path / "exec.log", tmp_path / "victim.pid", tmp_path / "killed"

    @metalab.operation(name="victim")
    def victim(params, capture):
        _log(log, params["x"])
        if params["x"] == 5 and not flag.exists():
            pidfile.write_text(str(os.getpid()))
            time.sleep(600)  # hangs until the test kills this worker
        capture.metric("y", params["x"])

    killed: list[int] = []

    def assassin() -> None:
        deadline = time.monotonic() + 120
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        pid = int(pidfile.read_text())
        flag.touch()
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    t = threading.Thread(target=assassin, daemon=True)
    t.start()
    res = metalab.run(
        _exp(victim, 12),
        store=tmp_path / "s",
        executor=metalab.ProcessExecutor(2),
        partition_size=4,
    )
    t.join(10)
    assert killed
    runs = {r.params["x"]: r for r in res}
    assert sorted(runs) == list(range(12))
    assert {r.status for r in runs.values()} == {"success"}
    pids5 = [p for x, p in _lines(log) if x == 5]
    assert len(pids5) == 2 and pids5[0] == killed[0] and pids5[1] != killed[0]


def test_timeout_on_a_cluster_reclaims_the_worker(tmp_path):
    log = tmp_path / "exec.log"

    @metalab.operation(name="hang")
    def hang(params, capture):
        _log(log, params["x"])
        if params["x"] == 2:
            time.sleep(600)
        capture.metric("y", params["x"])

    res = metalab.run(
        _exp(hang, 8),
        store=tmp_path / "s",
        executor=metalab.ProcessExecutor(2),
        partition_size=4,
        timeout=2,
    )
    runs = {r.params["x"]: r for r in res}
    assert sorted(runs) == list(range(8))
    assert runs[2].status == "timeout" and runs[2].error["type"] == "Timeout"
    assert {runs[x].status for x in runs if x != 2} == {"success"}
    (pid,) = [p for x, p in _lines(log) if x == 2]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
