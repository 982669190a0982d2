"""Clocks do not decide which record is current: the attempt number does.

A first sweep records some runs as failed.  Their retry then runs in another driver
process whose clock is an hour behind: ``time.time`` and ``time.time_ns`` are replaced
before metalab is imported, so the real writer stamps every record (and the sweep
file) an hour early.  The retry's success must supersede the failure that "ended later",
for readers, for compaction, and for the raw-reader recipe; and resuming afterwards must
run nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds

import metalab
from metalab.store import Store

HERE = Path(__file__).parent
SKEW_S = 3600
N = 12


@metalab.operation(name="skew", version="1")
def skew_op(params, capture):
    with open(os.environ["SKEW_LOG"], "a") as f:
        f.write(f"{params['x']}\n")
    if params["x"] % 3 == 0 and os.path.exists(os.environ["SKEW_FAIL"]):
        raise RuntimeError("flaky on the first host")
    capture.metric("y", params["x"] * 2)


def experiment() -> metalab.Experiment:
    return metalab.Experiment(name="skew", operation=skew_op, params=metalab.grid(x=list(range(N))))


SKEWED_DRIVER = f"""
import time
_ns, _s = time.time_ns, time.time
time.time_ns = lambda: _ns() - {SKEW_S} * 10**9  # this host's clock is an hour behind
time.time = lambda: _s() - {SKEW_S}
import metalab, test_clock_skew as t
metalab.run(t.experiment(), store=__import__("sys").argv[1])
"""


def _executed(log: Path) -> list[int]:
    return [int(v) for v in log.read_text().split()] if log.exists() else []


def _raw_latest(root: Path) -> pd.DataFrame:
    """What docs/store-format.md tells raw readers: highest attempt, then latest end."""
    df = ds.dataset(root / "records", format="parquet").to_table().to_pandas()
    return df.sort_values(["attempt", "ended_at"]).drop_duplicates("run_id", keep="last")


def test_retry_on_a_host_an_hour_behind_supersedes_the_failure(tmp_path, monkeypatch):
    root, log, flag = tmp_path / "store", tmp_path / "exec.log", tmp_path / "fail"
    monkeypatch.setenv("SKEW_LOG", str(log))
    monkeypatch.setenv("SKEW_FAIL", str(flag))
    flag.touch()
    metalab.run(experiment(), store=root, partition_size=4)
    failing = [x for x in range(N) if x % 3 == 0]
    assert sorted(_executed(log)) == list(range(N))
    flag.unlink()
    log.unlink()

    env = {**os.environ, "PYTHONPATH": str(HERE)}
    proc = subprocess.run(
        [sys.executable, "-c", SKEWED_DRIVER, str(root)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(_executed(log)) == failing  # the retries ran on the skewed host

    # The skew is real: in the raw files each retry "ended" about an hour before its failure.
    raw = ds.dataset(root / "records", format="parquet").to_table().to_pandas()
    both = raw[raw["params.x"].isin(failing)]
    failed = both[both["status"] == "failed"].set_index("run_id")
    ok = both[both["status"] == "success"].set_index("run_id")
    assert len(failed) == len(ok) == len(failing)
    lag = (failed["ended_at"] - ok.loc[failed.index, "ended_at"]).dt.total_seconds()
    assert (lag > SKEW_S - 120).all(), lag
    assert (ok["attempt"] == 2).all() and (failed["attempt"] == 1).all()

    def check() -> None:
        res = metalab.load_results(root)
        table = res.to_pandas(full=True).set_index("x")
        assert len(table) == N
        assert set(table["status"]) == {"success"}
        assert table.loc[failing, "attempt"].tolist() == [2] * len(failing)
        latest = _raw_latest(root).set_index("run_id").sort_index()
        assert latest["status"].eq("success").all() and len(latest) == N
        log.unlink(missing_ok=True)
        metalab.run(experiment(), store=root)  # resume with the right clock: nothing to do
        assert _executed(log) == []

    check()
    # Compaction must keep the retry too (it deduplicates with the same rule).
    assert Store.open(root).compact(at_files=2) > 0
    assert len(list((root / "records").glob("*.parquet"))) == 1
    check()
