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
