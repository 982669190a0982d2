"""Speed-up of CPU-bound 10 ms runs on 1, 2, ... N worker processes, against one worker.

    uv run python benchmarks/scaling.py [--runs 400] [--max-workers N]

Each run busy-loops for 10 ms of CPU.  The workers of each size are a LocalCluster
started before the timed sweep (start-up excluded); each row reports runs/s and the
speed-up against the one-worker row measured in the same run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, print_table, tmpdir

import metalab


@metalab.operation(name="busy10ms", version="1")
def busy(params, capture):
    """Burn 10 ms of CPU (not sleep: sleeping runs would scale on threads too)."""
    end = time.thread_time() + 0.010
    n = 0
    while time.thread_time() < end:
        n += 1
    capture.metric("loops", n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--max-workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    print(f"# metalab scaling benchmark\n\nmachine: {machine()}")
    exp = metalab.Experiment(
        name="scaling", operation=busy, params=metalab.grid(i=list(range(args.runs)))
    )
    rows = []
    base = None
    for w in range(1, args.max_workers + 1):
        cluster = LocalCluster(
            n_workers=w,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,
        )
        with Client(cluster, set_as_default=False) as client, tmpdir() as d:
            metalab.run(exp, store=d / "warm", executor=metalab.DaskExecutor(client))
            t0 = time.perf_counter()
            metalab.run(exp, store=d / "s", executor=metalab.DaskExecutor(client))
            t = time.perf_counter() - t0
        cluster.close()
        base = base or t
        ideal = args.runs * 0.010 / w
        rows.append([w, args.runs / t, base / t, ideal / t])
    print_table(
        f"{args.runs} runs of 10 ms CPU each",
        ["workers", "runs/s", "speed-up vs 1 worker", "efficiency vs ideal"],
        rows,
    )


if __name__ == "__main__":
    main()
