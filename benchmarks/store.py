"""Store reads at scale: resume planning, table(), a selective filter, files, memory.

    uv run python benchmarks/store.py [--runs 1000000]

Builds a store of N trivial runs with metalab (grid a x x, a = 100 values, slowest axis),
then measures against pyarrow reading the same Parquet files in the same process:

* resume planning (which runs are done) vs ``pq.read_table(records, columns=["run_id"])``,
  with the plan's run ids from the store's plan cache (``plans/``) and without it;
* ``load_results(store).table(as_dataframe=True)`` vs ``pq.read_table(...).to_pandas()``;
* ``filter(a=7)`` (1% of runs) vs the full read: bytes read from files (/proc/self/io
  ``rchar``) and time;
* files in the store, and the peak memory of the driver process that made it.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, print_table, tmpdir

MAKE_STORE = """
import resource, sys, time
sys.path.insert(0, {bench!r})
import metalab
from _common import trivial
n = int(sys.argv[2]); a = 100
exp = metalab.Experiment(name="store_bench", operation=trivial,
    params=metalab.grid(a=list(range(a)), x=list(range(n // a))), seeds=metalab.seeds(base=1))
t0 = time.perf_counter()
metalab.run(exp, store=sys.argv[1])
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def rchar() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return 0


def timed(fn, repeat: int = 3):
    """Result, median seconds and bytes read (of the median call) over ``repeat`` calls."""
    fn()  # warm-up: imports, page cache
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r0 = rchar()
        out = fn()
        samples.append((time.perf_counter() - t0, rchar() - r0))
    samples.sort()
    t, nbytes = samples[len(samples) // 2]
    return out, t, nbytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1_000_000)
    args = ap.parse_args()
    n = args.runs
    print(f"# metalab store benchmark\n\nmachine: {machine()}\n")
    with tmpdir() as d:
        store = d / "store"
        code = MAKE_STORE.format(bench=str(Path(__file__).parent))
        res = subprocess.run(
            [sys.executable, "-c", code, str(store), str(n)],
            check=True,
            capture_output=True,
            text=True,
        )
        sweep_s, peak_kb = res.stdout.split()
        print(
            f"made {n:,} runs in {float(sweep_s):.1f} s "
            f"({n / float(sweep_s):,.0f} runs/s), driver peak RSS {int(peak_kb) / 1024:.0f} MiB"
        )

        import pyarrow.parquet as pq

        import metalab
        from metalab.store import Store, plan_cache
        from metalab.sweep.planning import plan_todo

        files = sorted(str(p) for p in (store / "records").glob("*.parquet"))
        n_files = sum(1 for p in store.rglob("*") if p.is_file())

        exp = metalab.Experiment(
            name="store_bench",
            operation=__import__("_common").trivial,
            params=metalab.grid(a=list(range(100)), x=list(range(n // 100))),
            seeds=metalab.seeds(base=1),
        )
        st = Store.open(store)
        rows = []
        _, base_ids, _ = timed(lambda: pq.read_table(files, columns=["run_id"]))
        (_, todo, skipped), t_plan, _ = timed(
            lambda: plan_todo(exp, st, resume=True, retry_failed=True)
        )
        assert len(todo) == 0 and skipped == n, (len(todo), skipped)
        assert any(plan_cache.folder(st.layout).glob("*.parquet")), "no cached plan"

        def uncached():
            shutil.rmtree(plan_cache.folder(st.layout), ignore_errors=True)
            return plan_todo(exp, st, resume=True, retry_failed=True)

        _, t_first, _ = timed(uncached)
        _, t_desc, _ = timed(exp.plan)
        rows.append(
            ["resume planning (all done), plan cached", t_plan, base_ids, t_plan / base_ids]
        )
        rows.append(
            [
                "resume planning, no cached plan (computed, then cached)",
                t_first,
                base_ids,
                t_first / base_ids,
            ]
        )
        rows.append(
            ["  computing the run ids (`Experiment.plan()`)", t_desc, base_ids, t_desc / base_ids]
        )

        _, t_pa, bytes_full = timed(lambda: pq.read_table(files).to_pandas())
        df, t_tab, _ = timed(lambda: metalab.load_results(store).table(as_dataframe=True))
        assert len(df) == n
        rows.append(["table(as_dataframe=True)", t_tab, t_pa, t_tab / t_pa])

        sel, t_sel, bytes_sel = timed(
            lambda: metalab.load_results(store).filter(a=7).table(as_dataframe=True)
        )
        assert len(sel) == n // 100
        rows.append(["filter(a=7) (1% of runs)", t_sel, t_pa, t_sel / t_pa])
        print_table(
            "Reads against pyarrow on the same files",
            ["operation", "metalab s", "pyarrow baseline s", "ratio"],
            rows,
        )
        print_table(
            "Selective filter: bytes read from files",
            ["read", "bytes", "share of full read"],
            [
                ["full table", f"{bytes_full:,}", 1.0],
                ["filter(a=7)", f"{bytes_sel:,}", bytes_sel / max(bytes_full, 1)],
            ],
        )
        print_table(
            "Store",
            ["what", "value"],
            [
                ["files in the store", n_files],
                ["record files", len(files)],
                ["driver peak RSS (MiB)", f"{int(peak_kb) / 1024:.0f}"],
                [
                    "this process peak RSS (MiB)",
                    f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}",
                ],
            ],
        )


if __name__ == "__main__":
    main()
