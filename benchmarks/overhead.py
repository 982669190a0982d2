"""Per-run overhead of metalab against a raw Python loop, measured in the same run.

    uv run python benchmarks/overhead.py            # 1k, 10k, 100k, 1M runs
    uv run python benchmarks/overhead.py --quick    # 1k, 10k, 100k
    uv run python benchmarks/overhead.py --smoke    # tiny sizes: a check, not figures

Baseline: a plain loop computing the trivial run (y = x*x + seed, three values), a list
of dicts, one Parquet file at the end.  metalab rows run the same sweep through
``metalab.run`` with a durable store (journal lines flushed per run, Parquet records).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    best_of,
    experiment,
    machine,
    noop,
    print_table,
    raw_loop,
    tmpdir,
    trivial,
)

import metalab


def _sweep(n: int, op, executor=None, repeat: int = 3) -> float:
    exp = experiment(n, op)
    with tmpdir() as d:
        i = [0]

        def go() -> None:
            i[0] += 1
            metalab.run(exp, store=d / f"s{i[0]}", executor=executor)

        return best_of(go, repeat)


def fresh_process_times(repeat: int = 5, n: int = 1000) -> list[list[object]]:
    """Whole ``n``-run sweeps as fresh `python` processes (persisted stores)."""
    py = sys.executable
    sweep = textwrap.dedent(
        """
        import sys, metalab
        @metalab.operation(name="noop", version="1")
        def noop(params):
            return None
        exp = metalab.Experiment(name="fresh", operation=noop,
                                 params=metalab.grid(x=list(range(int(sys.argv[2])))))
        metalab.run(exp, store=sys.argv[1], resume=False)
        """
    )
    raw = textwrap.dedent(
        """
        import sys, time, pyarrow as pa, pyarrow.parquet as pq
        rows = [{"x": x, "y": x * x + 1, "t": time.time()} for x in range(int(sys.argv[2]))]
        pq.write_table(pa.Table.from_pylist(rows), sys.argv[1])
        """
    )
    rows = []
    with tmpdir() as d:
        for label, code, target in (
            ("python -c pass", "pass", d / "x"),
            ("import metalab", "import metalab", d / "x"),
            (f"raw loop + Parquet, {n:,} runs", raw, d / "raw.parquet"),
            (f"metalab.run, {n:,} no-op runs", sweep, d / "store"),
        ):
            times = []
            for k in range(repeat):
                t0 = time.perf_counter()
                subprocess.run([py, "-c", code, str(target) + str(k), str(n)], check=True)
                times.append(time.perf_counter() - t0)
            times.sort()
            rows.append([label, times[len(times) // 2]])
    base = rows[0][1]
    return [[label, t, t - base] for label, t in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the 1M-run sweeps")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: a check, not figures")
    args = ap.parse_args()
    sizes = [1_000, 10_000, 100_000] + ([] if args.quick else [1_000_000])
    cluster_sizes = (10_000, 100_000)
    if args.smoke:
        sizes, cluster_sizes = [100], (100,)
    print(f"# metalab overhead benchmark\n\nmachine: {machine()}")

    rows = []
    for n in sizes:
        rep = 1 if n >= 1_000_000 else 3
        with tmpdir() as d:
            raw = best_of(lambda d=d, n=n: raw_loop(n, d / "raw.parquet"), rep)
        t_noop = _sweep(n, noop, repeat=rep)
        t_triv = _sweep(n, trivial, repeat=rep)
        rows.append([f"{n:,}", n / raw, n / t_noop, n / t_triv, t_noop / raw, t_triv / raw])
    print_table(
        "Default executor (in-process) vs the raw loop",
        [
            "runs",
            "raw loop runs/s",
            "metalab no-op runs/s",
            "metalab trivial runs/s",
            "no-op / raw (time)",
            "trivial / raw (time)",
        ],
        rows,
    )

    # ProcessExecutor(2): the same LocalCluster, started once (start-up excluded).
    import logging

    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.CRITICAL,
    )
    start = time.perf_counter() - t0
    prow = []
    with Client(cluster, set_as_default=False) as client:
        exe = metalab.DaskExecutor(client)
        for n in cluster_sizes:
            t_default = _sweep(n, noop, repeat=3)
            t_proc = _sweep(n, noop, executor=exe, repeat=3)
            prow.append([f"{n:,}", n / t_default, n / t_proc, t_default / t_proc])
    cluster.close()
    print_table(
        f"LocalCluster of 2 processes (start-up {start:.2f} s excluded), no-op runs",
        ["runs", "default runs/s", "2 processes runs/s", "speed ratio (>= 1 is not slower)"],
        prow,
    )

    print_table(
        "Fresh processes (median)",
        ["what", "wall s", "over `python -c pass` s"],
        fresh_process_times(*((1, 100) if args.smoke else ())),
    )


if __name__ == "__main__":
    main()
