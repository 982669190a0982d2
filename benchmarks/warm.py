"""Warm executors: sweeps in a ``with ProcessExecutor(...) as exe:`` block against the default
executor, measured in the same run.

    uv run python benchmarks/warm.py                 # 10k no-op runs, 2 worker processes
    uv run python benchmarks/warm.py --runs 200 --repeat 1   # smoke size

Baseline: the same sweep on the default (in-process) executor.  The block starts its
cluster once (``start-up``, at ``with``); every ``run()`` of the block computes on it.
For comparison, a ``ProcessExecutor`` without a block starts a cluster in every ``run()``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import experiment, machine, noop, print_table, tmpdir

import metalab


def _timed_runs(n: int, executor: metalab.Executor | None, repeat: int, d: Path) -> list[float]:
    exp = experiment(n, noop, name="warm")
    times = []
    for k in range(repeat):
        t0 = time.perf_counter()
        metalab.run(exp, store=d / f"s{time.monotonic_ns()}-{k}", executor=executor)
        times.append(time.perf_counter() - t0)
    return times


def measure(n: int, workers: int, repeat: int) -> list[list[object]]:
    """Rows of (what, wall s, runs/s, rate against the default executor)."""
    with tmpdir() as d:
        default = min(_timed_runs(n, None, repeat, d))
        t0 = time.perf_counter()
        with metalab.ProcessExecutor(max_workers=workers) as exe:
            start = time.perf_counter() - t0
            first = _timed_runs(n, exe, 1, d)[0]
            later = min(_timed_runs(n, exe, repeat, d))
        cold = _timed_runs(n, metalab.ProcessExecutor(max_workers=workers), 1, d)[0]
    return [
        ["default executor (best of runs)", default, n / default, 1.0],
        [f"ProcessExecutor({workers}) block: start-up at `with`", start, "", ""],
        [f"ProcessExecutor({workers}) block: first run()", first, n / first, default / first],
        [
            f"ProcessExecutor({workers}) block: later run() (best)",
            later,
            n / later,
            default / later,
        ],
        [f"ProcessExecutor({workers}) without a block", cold, n / cold, default / cold],
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000, help="runs per sweep (default 10k)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--repeat", type=int, default=3, help="sweeps per measurement")
    args = ap.parse_args()
    print(f"# metalab warm executors\n\nmachine: {machine()}")
    print_table(
        f"{args.runs:,} no-op runs per sweep",
        ["what", "wall s", "runs/s", "rate / default executor's"],
        measure(args.runs, args.workers, args.repeat),
    )


if __name__ == "__main__":
    main()
