"""Checkpointed runs killed for real (SIGKILL, SIGTERM) continue where they stopped.

The final records and stepped metrics equal an uninterrupted sweep's bit for bit, and
only the epochs after the last checkpoint run twice.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from _ckpt_op import EPOCHS, build

import metalab

WAIT_S = 120.0
HERE = Path(__file__).parent


def _final(store: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    res = metalab.load_results(store)
    table = res.to_pandas().sort_values("x")[["x", "status", "loss", "final"]]
    series = res.series("loss").sort_values(["x", "step"])[["x", "step", "value"]]
    return table.reset_index(drop=True), series.reset_index(drop=True)


def _reference(tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    metalab.run(build(str(tmp_path / "ref.log")), store=tmp_path / "ref")
    return _final(tmp_path / "ref")


def _epochs(log: Path) -> collections.Counter[tuple[int, int]]:
    lines = [ln.split() for ln in log.read_text().splitlines()]
    return collections.Counter((int(x), int(e)) for x, e, _ in lines)


def _wait_for(path: Path, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"driver ended early: {proc.communicate()}")
        assert time.monotonic() < deadline, f"{path} did not appear in {WAIT_S} s"
        time.sleep(0.02)


def _same(got, ref) -> None:
    pd.testing.assert_frame_equal(got[0], ref[0])  # exact: no tolerance
    pd.testing.assert_frame_equal(got[1], ref[1])


def test_driver_sigkilled_after_a_checkpoint_resumes_from_it(tmp_path):
    ref = _reference(tmp_path)
    log, store = tmp_path / "exec.log", tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_ckpt_op.py"), str(store), str(log), "9"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])},
    )
    try:
        _wait_for(Path(f"{log}.pid"), proc)  # epoch 9 of x=0: checkpointed after epoch 7
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    res = metalab.run(build(str(log)), store=store)
    assert res.counts() == {"success": 2, "failed": 0, "pending": 0}
    _same(_final(store), ref)
    twice = sorted(k for k, n in _epochs(log).items() if n > 1)
    assert twice == [(0, 8), (0, 9)]  # the work since the checkpoint, nothing else


@pytest.mark.cluster
@pytest.mark.slow
def test_worker_sigkilled_continues_from_its_checkpoint_in_the_same_sweep(tmp_path):
    ref = _reference(tmp_path)
    log = tmp_path / "exec.log"
    killed: list[int] = []

    def assassin() -> None:
        pidfile = Path(f"{log}.pid")
        deadline = time.monotonic() + WAIT_S
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    t = threading.Thread(target=assassin, daemon=True)
    t.start()
    res = metalab.run(
        build(str(log), pause_at=9),
        store=tmp_path / "s",
        executor=metalab.ProcessExecutor(2),
        partition_size=1,
    )
    t.join(10)
    assert killed
    assert res.counts() == {"success": 2, "failed": 0, "pending": 0}
    _same(_final(tmp_path / "s"), ref)
    twice = sorted(k for k, n in _epochs(log).items() if n > 1)
    assert twice == [(0, 8), (0, 9)]


@pytest.mark.cluster
@pytest.mark.slow
def test_worker_sigterm_requeues_the_run_to_another_worker(tmp_path):
    ref = _reference(tmp_path)
    log = tmp_path / "exec.log"
    res = metalab.run(
        build(str(log), term_at=9),
        store=tmp_path / "s",
        executor=metalab.ProcessExecutor(2),
        partition_size=1,
    )
    assert res.counts() == {"success": 2, "failed": 0, "pending": 0}
    _same(_final(tmp_path / "s"), ref)
    epochs = _epochs(log)
    assert set(epochs.values()) == {1}  # checkpointed at the SIGTERM: nothing repeated
    assert len(epochs) == 2 * EPOCHS
    pids = {int(p) for x, e, p in (ln.split() for ln in log.read_text().splitlines()) if x == "0"}
    assert len(pids) == 2  # continued in another worker process
