"""A SIGKILLed driver's sweep reads as "interrupted" (not "running" forever), with counts
of the records the store actually holds, in ``metalab show`` and the report."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from _faults import records, start_driver, wait_for_executions

import metalab
from metalab.cli import main
from metalab.store import Store

N = 40


def test_killed_driver_shows_interrupted_with_stored_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, log = tmp_path / "store", tmp_path / "exec.log"
    proc = start_driver(store, log, "--stop", str(N), "--sleep", "0.03", "--partition-size", "10")
    wait_for_executions(log, 15, proc)
    (sweep,) = Store.open(store).read_sweeps()
    assert sweep["state"] == "running"  # its driver lives
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    (sweep,) = Store.open(store).read_sweeps()
    assert "ended" not in sweep and sweep["state"] == "interrupted"
    held = len(records(store))
    assert 0 < held < N

    assert main(["show", str(store)]) == 0
    out = capsys.readouterr().out
    assert "interrupted" in out and "running" not in out
    assert f"records now in the store: {held} success" in out
    assert f"runs                 {held} ({held} success)" in out
    assert f"pending              {N - held} planned by the latest sweep" in out

    pytest.importorskip("matplotlib")
    from metalab.report import build_report

    page = build_report(store)
    assert "interrupted" in page
    assert f"planned {N - held} more runs that the store does not hold (its driver is gone" in page

    # Resuming finishes the sweep; the dead one stays interrupted, the new one finished.
    metalab.run(_driver_experiment(log), store=store)
    states = [s["state"] for s in Store.open(store).read_sweeps()]
    assert states == ["interrupted", "finished"]


def _driver_experiment(log: Path) -> metalab.Experiment:
    import argparse

    from driver import build

    args = argparse.Namespace(log=str(log), sleep=0.0, stubborn=False, start=0, stop=N)
    return build(args)
