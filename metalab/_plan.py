"""Partitioning policy: how run descriptors are cut into Dask partitions.

Each partition is one Dask task that runs many runs (a task costs ~0.2-10 ms, a run
can cost microseconds).  Policy, unless ``partition_size=`` is given:

* in-process executors: partitions of up to 50,000 runs (few tasks, few files);
* clusters with W workers: about 3 partitions per worker, the last third of the runs
  cut into partitions half as large, so that workers finish together at the tail;
  never more than 50,000 runs in one partition.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd

MAX_PARTITION = 50_000


def partition_bounds(n: int, n_workers: int, partition_size: int | None = None) -> list[int]:
    """Start offsets of each partition plus ``n`` at the end."""
    if n <= 0:
        return [0, 0]
    if partition_size is not None:
        if partition_size < 1:
            raise ValueError(f"partition_size must be >= 1, got {partition_size}")
        return [*range(0, n, partition_size), n]
    w = max(1, n_workers)
    if w == 1:
        k = math.ceil(n / MAX_PARTITION)
        return [round(i * n / k) for i in range(k)] + [n]
    head_parts, tail_parts = 2 * w, 2 * w
    size = max(1, math.ceil(n / (head_parts + tail_parts / 2)))
    bounds = [0]
    big = min(size, MAX_PARTITION)
    small = max(1, min(size // 2, MAX_PARTITION))
    while bounds[-1] < n:
        step = big if len(bounds) <= head_parts else small
        bounds.append(min(n, bounds[-1] + step))
    return bounds


def to_dask(
    plan: pd.DataFrame,
    *,
    n_workers: int,
    partition_size: int | None,
    npartitions: int | None = None,
) -> dd.DataFrame:
    """The descriptor frame as a Dask dataframe cut by :func:`partition_bounds`."""
    import dask.dataframe as dd

    n = len(plan)
    plan = plan.reset_index(drop=True)
    if npartitions is not None:
        return dd.from_pandas(plan, npartitions=max(1, npartitions), sort=True)
    bounds = partition_bounds(n, n_workers, partition_size)
    ddf = dd.from_pandas(plan, npartitions=1, sort=True)
    if len(bounds) > 2 and n > 0:
        ddf = ddf.repartition(divisions=[*bounds[:-1], n - 1])
    return ddf
