"""Bytes read by ``result.frame`` against the store's size, with and without the
deduplication pass, measured in the same run (Linux: ``/proc/self/io``).

    uv run python benchmarks/frame_bytes.py              # 100k trivial runs
    uv run python benchmarks/frame_bytes.py --runs 2000  # smoke size

The store holds one sweep in files of 10k runs, then the same store after compaction
(one file).  "with the pass" forces the deduplication pass (what every frame did before
the store's files could prove their run ids distinct); "as shipped" is the current path.
Bytes are ``rchar`` of the whole frame computation minus a frame matching nothing
(footers, manifest, sweep files), over the size of the records files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import experiment, machine, print_table, tmpdir, trivial

import metalab
from metalab.results import frame as frame_module
from metalab.store.store import Store


def _rchar() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/self/io")


def _read(store: Path, **equals: object) -> int:
    res = metalab.load_results(store)
    if equals:
        res = res.filter(**equals)
    before = _rchar()
    res.frame.compute(scheduler="sync")
    return _rchar() - before


def _data_bytes(store: Path) -> float:
    return _read(store) - _read(store, x=-1)


def measure(store: Path) -> list[object]:
    files = list((store / "records").glob("*.parquet"))
    size = sum(f.stat().st_size for f in files)
    _read(store)  # warm up imports
    shipped = _data_bytes(store)
    real = frame_module._distinct_stores
    frame_module._distinct_stores = lambda *a: frozenset()  # the pass, as before
    try:
        forced = _data_bytes(store)
    finally:
        frame_module._distinct_stores = real
    return [len(files), size, forced / size, shipped / size]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100_000)
    args = ap.parse_args()
    print(f"# metalab frame bytes\n\nmachine: {machine()}")
    rows = []
    with tmpdir() as d:
        metalab.run(experiment(args.runs, trivial), store=d / "s", partition_size=10_000)
        rows.append(["one sweep", *measure(d / "s")])
        Store.open(d / "s").compact(at_files=2)
        rows.append(["after compaction", *measure(d / "s")])
    print_table(
        f"result.frame of {args.runs:,} trivial runs: bytes read / store size",
        ["store", "files", "store bytes", "with the pass", "as shipped"],
        rows,
    )


if __name__ == "__main__":
    main()
