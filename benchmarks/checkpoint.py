"""Cost of a checkpoint: ``capture.checkpoint(state)`` against numpy.save + fsync.

    uv run python benchmarks/checkpoint.py [--repeat 5]

For states of 1 MB and 100 MB (a float64 array, and a dict ``{"epoch": n, "w": array}``
saved as one ``.npz`` bundle), measured in one process on the same disk:

* ``checkpoint``: ``capture.checkpoint(state)`` with 20 generators' states and 1,000
  stepped-metric points captured so far (atomic write, fsync, sha256, sealed index
  entry, the previous checkpoint deleted);
* ``numpy.save``: the same bytes written with ``numpy.save`` to a file, then
  ``os.fsync`` (the least a durable write costs);
* ``restore``: ``capture.restore()`` (sha256 check, load, generators and steps put back).

The median of ``--repeat`` timings is kept; the ratio is checkpoint / numpy.save.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, machine, print_table, tmpdir

from metalab.capture import Capture, attach_seeds
from metalab.seeds import SeedBundle


def _capture(root: Path) -> Capture:
    seeds = SeedBundle(1, (0,)).tracked()
    for i in range(20):
        seeds.derive(f"g{i}").numpy().random()
    cap = Capture("bench-run", str(root))
    attach_seeds(cap, seeds)
    for step in range(1000):
        cap.metric("loss", 1.0 / (step + 1), step=step)
    return cap


def _numpy_save(arr: np.ndarray, path: Path) -> None:
    with open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def measure(mb: int, kind: str, repeat: int) -> list[object]:
    arr = np.random.default_rng(0).random(mb * 1024 * 1024 // 8)
    state = arr if kind == "array" else {"epoch": 3, "w": arr}
    with tmpdir() as root:
        cap = _capture(root)
        ck = best_of(lambda: cap.checkpoint(state), repeat)
        raw = best_of(lambda: _numpy_save(arr, root / "raw.npy"), repeat)
        rs = best_of(lambda: _capture(root).restore(), repeat)
    return [
        f"{mb} MB",
        kind,
        f"{ck * 1e3:.1f}",
        f"{raw * 1e3:.1f}",
        f"{ck / raw:.2f}",
        f"{rs * 1e3:.1f}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rows = [measure(mb, kind, args.repeat) for mb in (1, 100) for kind in ("array", "dict")]
    print_table(
        f"checkpoint cost ({machine()})",
        ["state", "kind", "checkpoint ms", "numpy.save+fsync ms", "ratio", "restore ms"],
        rows,
    )


if __name__ == "__main__":
    main()
