"""``benchmarks/search.py --quick`` runs end to end and prints its four tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("optuna")
pytest.importorskip("sklearn")

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "search.py"


def test_search_benchmark_quick_mode():
    out = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    for title in ("(a) per-trial overhead", "(b) 100 ms trials", "(c) best value", "(d) noisy"):
        assert title in out.stdout
    rows = [line for line in out.stdout.splitlines() if line.startswith("| svc |")]
    assert len(rows) == 1  # the SVC on the digits data ran in both loops
