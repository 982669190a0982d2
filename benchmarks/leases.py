"""The cost of leases: the same sweep with and without them, in one process.

    uv run python benchmarks/leases.py [--runs 20000] [--sizes 20000,1000,100,20] [--repeat 5]

Every ``metalab.run`` claims its partitions through lease files in the store (so that
other drivers on the same store can share the sweep); ``METALAB_LEASES=0`` turns that
off.  For each partition size the script times the same sweep of trivial runs both ways
(alternating, median of ``--repeat``, each in a fresh store) and reports the ratio and
the lease overhead per partition: (with - without) / partitions.  The first size is
one partition for the whole sweep (what a single driver gets by default).  It also
times the lease calls alone (claim, then release as done) on the same file system, the
floor of the per-partition cost without the noise of whole sweeps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import experiment, machine, print_table, tmpdir

import metalab
from metalab.sweep.cohort import LEASES_ENV


def _once(n: int, size: int, leases: bool) -> float:
    if leases:
        os.environ.pop(LEASES_ENV, None)
    else:
        os.environ[LEASES_ENV] = "0"
    with tmpdir() as d:
        t0 = time.perf_counter()
        metalab.run(experiment(n), store=d / "store", partition_size=size)
        return time.perf_counter() - t0


def claim_cost(parts: int = 2000) -> float:
    """Milliseconds per claim + release (done) of a partition, in a fresh cohort."""
    from metalab.store.leases import Cohort

    with tmpdir() as d:
        cohort = Cohort.join(d, "b" * 32, lambda: list(range(parts + 1)), 60.0, parts)
        t0 = time.perf_counter()
        for k in range(parts):
            claim = cohort.claim(k, "bench")
            assert claim is not None
            claim.release(done=True)
        took = time.perf_counter() - t0
        cohort.leave()
    return took / parts * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20_000)
    ap.add_argument("--sizes", default="20000,1000,100,20")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n = args.runs
    rows = []
    _once(min(n, 1000), 100, True)  # warm-up: imports, page cache
    for size in (int(s) for s in args.sizes.split(",")):
        parts = -(-n // size)
        with_, without = [], []
        for _ in range(args.repeat):  # alternate, so that load drifts hit both alike
            with_.append(_once(n, size, True))
            without.append(_once(n, size, False))
        a, b = statistics.median(with_), statistics.median(without)
        rows.append([size, parts, b, a, a / b, (a - b) / parts * 1e3])
    claims = statistics.median(claim_cost() for _ in range(args.repeat))
    print(f"{machine()}; {n:,} trivial runs, median of {args.repeat}")
    print(f"\nclaim + release of one partition alone: {claims:.3f} ms")
    print_table(
        "Lease overhead",
        ["runs/partition", "partitions", "without (s)", "with (s)", "ratio", "ms/partition"],
        rows,
    )


if __name__ == "__main__":
    main()
