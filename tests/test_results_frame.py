"""Results.frame, mixed schemas, measured filter pushdown, and the live view of a sweep."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import metalab
import metalab.store.files as store_files


# ------------------------------------------------------------------------ mixed schemas
@metalab.operation(name="mixed_a")
def op_a(params, capture):
    capture.metric("acc", params["lr"] * 10)


@metalab.operation(name="mixed_b")
def op_b(params, capture):
    capture.metric("loss", params["opt"]["lr"] + len(params["opt"]["name"]))
    capture.metric("steps", 3)


@metalab.operation(name="mixed_c")
def op_c(params, capture):
    capture.metric("acc", 0.5)
    capture.metric("loss", "low" == params["lr"])


def mixed_store() -> metalab.Results:
    def exp(op, params):
        return metalab.Experiment(
            name="mixed",
            version="1",
            context={},
            operation=op,
            params=params,
            seeds=metalab.seeds(base=3, replicates=2),
        )

    metalab.run(exp(op_a, metalab.grid(lr=[0.1, 0.2])), store="runs/mixed")
    metalab.run(
        exp(op_b, metalab.grid(opt=[{"name": "sgd", "lr": 0.5}, {"name": "adam", "lr": 0.5}])),
        store="runs/mixed",
    )
    metalab.run(exp(op_c, metalab.grid(lr=["low", "high"])), store="runs/mixed")  # lr: text
    return metalab.load_results("runs/mixed")


def test_mixed_params_and_metrics_load_together_with_nulls():
    res = mixed_store()
    df = res.to_pandas()
    assert len(df) == 12
    assert {"lr", "opt.name", "opt.lr", "acc", "loss", "steps"} <= set(df.columns)
    a = df[df["opt.name"].isna() & df["steps"].isna()]
    b = df[df["opt.name"].notna()]
    assert len(b) == 4 and b["acc"].isna().all() and b["lr"].isna().all()
    assert (b["steps"] == 3).all()
    # lr was a float in one sweep and text in another: the column holds both as text
    assert sorted(set(a["lr"])) == ["0.1", "0.2", "high", "low"]
    frame = res.frame
    import dask.dataframe as dd

    assert isinstance(frame, dd.DataFrame)
    got = frame.compute().sort_values("run_id").reset_index(drop=True)
    want = df.sort_values("run_id").reset_index(drop=True)
    assert list(got.columns) == list(want.columns)
    assert got["run_id"].tolist() == want["run_id"].tolist()
    pd.testing.assert_series_equal(got["acc"], want["acc"])
    assert got["steps"].dtype == "Int64" and got["steps"].isna().sum() == 8


def test_filters_and_queries_across_mixed_schemas():
    res = mixed_store()
    adam = res.filter(**{"opt.name": "adam"})
    assert len(adam) == 2 and set(adam.to_pandas()["loss"]) == {4.5}
    assert len(res.filter(lr="high")) == 2
    assert len(res.filter(lr=0.1)) == 2  # compared as text in the text column
    assert len(res.filter(steps=None)) == 8
    assert len(res.query("`opt.lr` > 0.1 and steps == 3")) == 4
    frame = res.filter(**{"opt.name": ["adam", "sgd"]}).frame.compute()
    assert len(frame) == 4 and set(frame["opt.name"]) == {"adam", "sgd"}
    assert len(res.query("acc >= 1").frame.compute()) == 4


def test_frame_is_lazy_and_selects_columns():
    res = mixed_store()
    frame = res.select("run_id", "acc").frame
    assert list(frame.columns) == ["run_id", "acc"]
    assert frame.npartitions >= 3
    assert len(frame.compute()) == 12
    assert frame["acc"].mean().compute() == pytest.approx(res.to_pandas()["acc"].mean())


# --------------------------------------------------------------------- pushdown, measured
@metalab.operation(name="wide_sweep")
def wide_op(params, capture):
    if params["a"] >= 8:
        raise ValueError("a too large")
    capture.metric("score", params["a"] + params["b"] / 1000)


def _rchar() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar")


def _bytes_read(fn) -> tuple[int, object]:
    before = _rchar()
    out = fn()
    return _rchar() - before, out


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_filters_are_pushed_down_to_the_parquet_reader(monkeypatch):
    monkeypatch.setattr(store_files, "ROW_GROUP_SIZE", 1000)
    exp = metalab.Experiment(
        name="wide_sweep",
        version="1",
        context={},
        operation=wide_op,
        params=metalab.grid(a=list(range(10)), b=list(range(1000))),
        seeds=metalab.seeds(base=0, replicates=1),
    )
    metalab.run(exp, partition_size=5000)
    files = sorted(Path("runs/wide_sweep/records").glob("*.parquet"))
    groups = sum(pq.ParquetFile(f).metadata.num_row_groups for f in files)
    assert groups == 10  # a = 0..9, one value of a per row group

    def load(**equals):
        return metalab.load_results("runs/wide_sweep").filter(**equals).to_pandas()

    load()  # warm up imports
    full, df = _bytes_read(load)
    assert len(df) == 10_000
    one, df = _bytes_read(lambda: load(a=3))
    assert len(df) == 1000 and set(df["a"]) == {3}
    failed, df = _bytes_read(lambda: load(status="failed"))
    assert len(df) == 2000 and set(df["a"]) == {8, 9}
    q, df = _bytes_read(
        lambda: (
            metalab.load_results("runs/wide_sweep")
            .query("a == 3 and status == 'success' and b < 10")
            .to_pandas()
        )
    )
    assert len(df) == 10
    # What every read costs whatever it matches (footers, manifest, sweep files): a
    # filter that no row group can match.
    fixed, df = _bytes_read(lambda: load(a=99))
    assert len(df) == 0 and fixed < full * 0.5, (fixed, full)
    data = full - fixed  # the row groups of a full read
    # one row group of ten is read, instead of all of them
    assert one - fixed < data * 0.25, (one, fixed, full)
    assert q - fixed < data * 0.25, (q, fixed, full)
    assert failed - fixed < data * 0.4, (failed, fixed, full)  # two of ten
    # the lazy frame only makes partitions of matching row groups
    frame = metalab.load_results("runs/wide_sweep").filter(a=[3, 4]).frame
    assert frame.npartitions == 1
    assert sorted(set(frame.compute()["a"])) == [3, 4]


# ---------------------------------------------------------------------------- live view
# The 21st and the 41st run wait at a gate the test opens, so the test sees the sweep in progress at
# two known points however fast or slow the machine is.  Every run takes 40 ms, longer
# than the journal's 20 ms flush threshold, so all runs before a gate are on disk.
LIVE_SCRIPT = """
import os, sys, time
import metalab

GATES = sys.argv[2]
STARTED = [0]  # runs started so far (in-process: one at a time, in Dask's order)

@metalab.operation(name="slow")
def slow(params, capture):
    i = params["i"]
    n = STARTED[0]
    STARTED[0] += 1
    if n in (20, 40):
        open(os.path.join(GATES, f"at-{n}"), "w").close()
        end = time.monotonic() + 240  # bounded: a dead test never leaves this hanging
        while not os.path.exists(os.path.join(GATES, f"go-{n}")) and time.monotonic() < end:
            time.sleep(0.01)
    time.sleep(0.04)
    capture.metric("value", i * 1.5)
    capture.metric("twice", i * 2)

exp = metalab.Experiment(name="slow", version="1", context={}, operation=slow,
                         params=metalab.grid(i=list(range(60))),
                         seeds=metalab.seeds(base=0, replicates=1))
metalab.run(exp, store=sys.argv[1], partition_size=7)
"""
#: Bound on waiting for the sweep subprocess (a broken sweep fails, it does not hang).
LIVE_WAIT_S = 240.0


def _start_sweep(tmp_path: Path) -> subprocess.Popen[bytes]:
    script = tmp_path / "live_sweep.py"
    script.write_text(textwrap.dedent(LIVE_SCRIPT))
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "runs" / "slow"), str(tmp_path)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for_gate(proc: subprocess.Popen[bytes], gate: Path) -> None:
    deadline = time.monotonic() + LIVE_WAIT_S
    while not gate.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"the sweep never reached {gate.name}"
        time.sleep(0.02)


def _sweep_started(path: Path) -> bool:
    try:
        return bool(metalab.load_results(path).provenance)
    except metalab.StoreError:  # not created yet
        return False


def _checked_view(path: Path) -> int:
    """Read the store as a user would; every run shown is complete. Returns how many."""
    res = metalab.load_results(path)
    df = res.to_pandas()
    counts = res.counts()
    if len(df):
        assert df["run_id"].is_unique
        assert (df["status"] == "success").all()
        assert df["i"].notna().all() and df["value"].notna().all()
        assert (df["value"] == df["i"] * 1.5).all()
        assert (df["twice"] == df["i"] * 2).all()
        assert df["ended_at"].notna().all()
    assert counts["success"] + counts["pending"] == 60
    return len(df)


def test_live_view_shows_completed_runs_never_half_written(tmp_path):
    proc = _start_sweep(tmp_path)
    path = tmp_path / "runs" / "slow"
    seen: list[int] = []
    gates = [20, 40]
    deadline = time.monotonic() + LIVE_WAIT_S
    try:
        while True:  # read as often as possible while the sweep writes
            done = proc.poll() is not None
            at_gate = bool(gates) and (tmp_path / f"at-{gates[0]}").exists()
            if _sweep_started(path):
                seen.append(_checked_view(path))
            if at_gate:  # the sweep waits: exactly the runs finished before the gate show
                assert seen[-1] == gates[0], seen
                (tmp_path / f"go-{gates.pop(0)}").touch()
            if done:
                break
            assert time.monotonic() < deadline, "the sweep did not finish"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == 0
    assert not gates
    assert seen == sorted(seen), "the number of runs seen went down"
    assert seen[-1] == 60


def test_killed_sweep_leaves_pending_runs(tmp_path):
    proc = _start_sweep(tmp_path)
    path = tmp_path / "runs" / "slow"
    try:
        _wait_for_gate(proc, tmp_path / "at-20")  # 20 runs done, the 21st in flight
    finally:
        proc.kill()
        proc.communicate()
    res = metalab.load_results(path)
    assert len(res) == 20
    assert res.counts() == {"success": 20, "failed": 0, "pending": 40}
    assert "40 pending" in repr(res)
    (sweep,) = res.provenance
    assert sweep["to_run"] == 60
    assert os.listdir(path / "journal")  # the killed partition's journal is still read


@pytest.mark.cluster
def test_frame_computes_on_a_cluster(client):
    res = mixed_store().filter(status="success")
    got = client.compute(res.frame).result()
    assert sorted(got["run_id"]) == sorted(res.to_pandas()["run_id"])
    assert got["steps"].dtype == "Int64"
