"""Scaling against raw Dask: CPU-bound 10 ms runs through metalab and through a bare
``dask.dataframe`` ``map_partitions`` on the same LocalCluster, in the same run.

    uv run python benchmarks/scaling.py                     # 1 .. cpu_count workers, 400 runs
    uv run python benchmarks/scaling.py --workers 16,64 --runs 20000   # a larger machine
    uv run python benchmarks/scaling.py --workers 1 --runs 8 --repeat 1  # smoke size

Each run busy-loops for 10 ms of CPU.  For each worker count one LocalCluster is started
(start-up excluded) and both sides are warmed up on it; then metalab (a durable store, a
record per run) and raw Dask (the same frame of runs cut into the same partitions, the same
busy loop per row, results returned to the driver) alternate ``--repeat`` times.
Efficiency is raw Dask's time over metalab's (1.0: metalab costs nothing on top of Dask).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, print_table, tmpdir

import metalab


def _burn(seconds: float) -> int:
    """Burn CPU (not sleep: sleeping runs would scale on threads too)."""
    end = time.thread_time() + seconds
    n = 0
    while time.thread_time() < end:
        n += 1
    return n


@metalab.operation(name="busy10ms", version="1")
def busy(params, capture):
    """10 ms of CPU, one metric."""
    capture.metric("loops", _burn(0.010))


def _busy_partition(df):  # the raw Dask side: the same work per row, a frame back
    import pandas as pd

    return pd.DataFrame({"i": df["i"].to_numpy(), "loops": [_burn(0.010) for _ in df["i"]]})


def _raw_dask(client, runs: int, npartitions: int) -> float:
    import dask.dataframe as dd
    import pandas as pd

    ddf = dd.from_pandas(pd.DataFrame({"i": range(runs)}), npartitions=npartitions, sort=True)
    out = ddf.map_partitions(_busy_partition, meta={"i": "int64", "loops": "int64"})
    t0 = time.perf_counter()
    df = client.compute(out).result()
    t = time.perf_counter() - t0
    assert len(df) == runs
    return t


def _metalab(exe, exp: metalab.Experiment, store: Path) -> float:
    t0 = time.perf_counter()
    res = metalab.run(exp, store=store, executor=exe)
    t = time.perf_counter() - t0
    assert res.provenance[-1]["success"] == len(exp.params)
    return t


def measure(workers: int, runs: int, repeat: int) -> list[object]:
    """One row: workers, raw Dask runs/s, metalab runs/s, efficiency, ideal efficiency."""
    from distributed import Client, LocalCluster

    from metalab.descriptors import partition_bounds

    exp = metalab.Experiment(
        name="scaling", operation=busy, params=metalab.grid(i=list(range(runs)))
    )
    nparts = max(1, len(partition_bounds(runs, workers, None)) - 1)  # metalab's own cut
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.CRITICAL,
    )
    raw, ml = [], []
    with Client(cluster, set_as_default=False) as client, tmpdir() as d:
        exe = metalab.DaskExecutor(client)
        _raw_dask(client, runs, nparts)  # warm up both sides
        _metalab(exe, exp, d / "warm")
        for k in range(repeat):
            raw.append(_raw_dask(client, runs, nparts))
            ml.append(_metalab(exe, exp, d / f"s{k}"))
    cluster.close()
    t_raw, t_ml = statistics.median(raw), statistics.median(ml)
    ideal = runs * 0.010 / workers
    return [workers, nparts, runs / t_raw, runs / t_ml, t_raw / t_ml, ideal / t_ml]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=400)
    default = ",".join(str(w) for w in range(1, (os.cpu_count() or 1) + 1))
    ap.add_argument(
        "--workers", default=default, help=f"comma-separated worker counts (default {default})"
    )
    ap.add_argument("--repeat", type=int, default=3, help="timed sweeps per side and count")
    args = ap.parse_args()
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    print(f"# metalab scaling against raw Dask\n\nmachine: {machine()}")
    rows = [measure(w, args.runs, args.repeat) for w in counts]
    print_table(
        f"{args.runs} runs of 10 ms CPU each (median of {args.repeat})",
        [
            "workers",
            "partitions",
            "raw Dask runs/s",
            "metalab runs/s",
            "efficiency vs raw Dask",
            "efficiency vs ideal",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
