"""Shared helpers for the benchmark scripts: timing, tables, the trivial operation."""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import metalab


@metalab.operation(name="trivial", version="1")
def trivial(params, seeds, capture):
    """The benchmark's trivial run: y = x*x + seed, three scalar metrics."""
    x = params["x"]
    capture.metric("y", x * x + seeds.base)
    capture.metric("x2", x * 2)
    capture.metric("one", 1.0)


@metalab.operation(name="noop", version="1")
def noop(params):
    """A run that does nothing at all."""
    return None


def experiment(n: int, op: metalab.Operation = trivial, name: str = "bench") -> metalab.Experiment:
    return metalab.Experiment(
        name=name, operation=op, params=metalab.grid(x=list(range(n))), seeds=metalab.seeds(base=1)
    )


def raw_loop(n: int, path: Path) -> None:
    """The baseline: a plain loop, a list of dicts, one Parquet file at the end."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    seed = 1
    for x in range(n):
        t0 = time.time()
        rows.append(
            {"x": x, "y": x * x + seed, "x2": x * 2, "one": 1.0, "t0": t0, "t1": time.time()}
        )
    pq.write_table(pa.Table.from_pylist(rows), path)


def best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    """Median wall time of ``repeat`` calls (each in a fresh temp folder)."""
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@contextmanager
def tmpdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="metalab-bench-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    print(f"\n## {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(f"{v:,.3g}" if isinstance(v, float) else str(v) for v in r) + " |")


def machine() -> str:
    import platform

    return (
        f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
