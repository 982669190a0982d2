"""The benchmark scripts run at tiny sizes (a smoke test: they must not rot; no figures,
no thresholds)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _bench(script: str, *args: str) -> str:
    res = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


@pytest.mark.cluster
def test_overhead_benchmark_runs():
    out = _bench("overhead.py", "--smoke")
    assert "Default executor (in-process) vs the raw loop" in out and "| 100 |" in out
    assert "Fresh processes" in out


@pytest.mark.cluster
def test_warm_executor_benchmark_runs():
    out = _bench("warm.py", "--runs", "50", "--repeat", "1", "--workers", "1")
    assert "block: later run()" in out and "without a block" in out


@pytest.mark.cluster
def test_scaling_benchmark_runs():
    out = _bench("scaling.py", "--workers", "1", "--runs", "6", "--repeat", "1")
    assert "efficiency vs raw Dask" in out
    assert out.strip().splitlines()[-1].startswith("| 1 | 1 |")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_frame_bytes_benchmark_runs():
    out = _bench("frame_bytes.py", "--runs", "300")
    assert "| after compaction | 1 |" in out


@pytest.mark.s3
def test_s3_benchmark_runs():
    pytest.importorskip("moto", reason="moto[server] is not installed")
    out = _bench("s3.py", "--smoke")
    assert "| S3 / local |" in out and "| filter(a=7): 1% | 20 |" in out


def test_store_benchmark_runs():
    # 20,000 runs: the smallest plan the plan cache keeps (store.py checks it was used).
    out = _bench("store.py", "--runs", "20000")
    assert "| resume planning (all done), plan cached |" in out
    assert "| filter(a=7) (1% of runs) |" in out


def test_leases_benchmark_runs():
    out = _bench("leases.py", "--runs", "200", "--sizes", "100,20", "--repeat", "1")
    assert "## Lease overhead" in out and "| 20 | 10 |" in out


def test_checkpoint_benchmark_runs():
    out = _bench("checkpoint.py", "--repeat", "1")
    assert "| 1 MB | array |" in out and "| 100 MB | dict |" in out


def test_peers_benchmark_runs_without_its_optional_peers():
    """Missing peers (MLflow, Sacred, signac, Ray Tune) get a note; metalab's rows print."""
    out = _bench(
        "peers.py", "--runs", "20", "--signac-runs", "20", "--large", "200", "--budget", "5"
    )
    assert "| metalab | durable store (journal + Parquet) | 200 |" in out
    assert "## Read-back" in out
