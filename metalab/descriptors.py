"""Run descriptors as a Dask dataframe, cut into partitions by the policy below.

:func:`to_dask` turns a frame of run descriptors (one row per run: run id, params,
replicate, seed) into the Dask dataframe that :func:`metalab.run` maps over.

Each partition is one Dask task that runs many runs: a task costs ~0.2-10 ms of
scheduling plus one Parquet file, while a run can cost microseconds.  Fewer, larger
partitions waste less; smaller ones balance better when runs differ in length or a
worker is lost.  The policy, unless ``partition_size=`` is given:

* **One worker** (the default in-process executor): as few partitions as possible, each
  of at most ``MAX_PARTITION`` (50,000) runs.
* **W workers** (threads, a LocalCluster, any Dask cluster; for ``adapt=(min, max)`` W
  counts the maximum): about four partitions per worker in three tiers.  With
  ``s = ceil(n / (2.75 W))``:

  - the head, the first ~73% of the runs, in ~2W partitions of ``s`` runs: every
    worker starts with large tasks;
  - then W partitions of ``s/2`` runs,
  - then W partitions of ``s/4`` runs, so the last tasks to start are short and all
    workers finish at nearly the same time (at most ``s/4`` runs of imbalance, not ``s``).

  Sizes never increase along the plan, no partition exceeds ``MAX_PARTITION``, and
  with ``n >= W`` there are at least ``W`` partitions, so every worker gets work.
* ``partition_size=k`` cuts exactly ``k`` runs per partition (the last one may be
  shorter): use it for very long runs (``partition_size=1``) or to cap the runs a lost
  worker takes with it.

Worker loss never costs a partition's finished runs: they are journaled one by one
and a retried partition skips them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd


MAX_PARTITION = 50_000
#: Runs per partition of the head relative to the plan: ``s = ceil(n / (HEAD_SPAN * W))``.
HEAD_SPAN = 2.75


def partition_bounds(n: int, n_workers: int, partition_size: int | None = None) -> list[int]:
    """Start offsets of each partition plus ``n`` at the end (see the module policy).

    Examples
    --------
    >>> partition_bounds(1000, 2)
    [0, 182, 364, 546, 728, 819, 910, 955, 1000]
    >>> partition_bounds(10, 4, partition_size=4)
    [0, 4, 8, 10]
    """
    if n <= 0:
        return [0, 0]
    if partition_size is not None:
        if (
            isinstance(partition_size, bool)
            or not isinstance(partition_size, int)
            or (partition_size < 1)
        ):
            from .errors import ExperimentError

            raise ExperimentError(
                f"partition_size must be an int >= 1 (runs per Dask task), got {partition_size!r}"
                "; leave it None to let metalab choose"
            )
        return [*range(0, n, partition_size), n]
    w = max(1, int(n_workers))
    if w == 1:
        k = math.ceil(n / MAX_PARTITION)
        q, r = divmod(n, k)  # the first r partitions take one run more
        return [i * q + min(i, r) for i in range(k)] + [n]
    s = min(MAX_PARTITION, max(1, math.ceil(n / (HEAD_SPAN * w))))
    tail = [max(1, s // 2)] * w + [max(1, s // 4)] * w
    head_n = n - sum(tail)
    if head_n < tail[0]:  # too few runs for a head: the tail tiers alone cover them
        head_n = 0
    bounds = [0]
    if head_n:  # 2W equal partitions (more only to respect MAX_PARTITION)
        k = max(math.ceil(head_n / MAX_PARTITION), min(2 * w, head_n // tail[0]))
        q, r = divmod(head_n, k)
        for i in range(k):
            bounds.append(bounds[-1] + q + (1 if i < r else 0))
    for step in tail:
        if bounds[-1] >= n:
            break
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
    ddf: dd.DataFrame
    if npartitions is not None:
        ddf = dd.from_pandas(plan, npartitions=max(1, npartitions), sort=True)
        return ddf
    bounds = partition_bounds(n, n_workers, partition_size)
    ddf = dd.from_pandas(plan, npartitions=1, sort=True)
    if len(bounds) > 2 and n > 0:
        ddf = ddf.repartition(divisions=(*bounds[:-1], n - 1))
    return ddf
