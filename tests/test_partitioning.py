"""Partition policy (metalab.descriptors): properties of partition_bounds."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

import metalab
from metalab.descriptors import MAX_PARTITION, partition_bounds, to_dask

SIZES = [1, 2, 3, 5, 7, 10, 31, 64, 99, 100, 101, 1000, 1023, 4096, 10_000, 123_457, 1_000_000]
WORKERS = [1, 2, 3, 4, 7, 16, 100]


def _sizes(bounds: list[int]) -> list[int]:
    return [b - a for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize(("n", "w"), list(itertools.product(SIZES, WORKERS)))
def test_bounds_cover_every_run_once_in_order(n, w):
    b = partition_bounds(n, w)
    assert b[0] == 0 and b[-1] == n
    assert all(x < y for x, y in itertools.pairwise(b)), "empty or backwards partition"


@pytest.mark.parametrize(("n", "w"), list(itertools.product(SIZES, WORKERS)))
def test_sizes_never_grow_and_never_exceed_the_cap(n, w):
    sizes = _sizes(partition_bounds(n, w))
    assert max(sizes) <= MAX_PARTITION
    assert all(a >= b for a, b in itertools.pairwise(sizes)), sizes


@pytest.mark.parametrize(("n", "w"), list(itertools.product(SIZES, WORKERS[1:])))
def test_every_worker_gets_work_and_tasks_stay_few(n, w):
    parts = len(partition_bounds(n, w)) - 1
    assert parts >= min(n, w)
    # about four per worker (more only when the 50,000-run cap forces it)
    assert parts <= max(4 * w + 2, -(-n // MAX_PARTITION) + 2 * w + 2)


@pytest.mark.parametrize("w", [2, 4, 16])
def test_tail_partitions_are_smaller_than_the_head(w):
    n = 100 * w * 4
    sizes = _sizes(partition_bounds(n, w))
    assert sizes[-1] * 3 <= sizes[0]  # last tasks to start are short: workers end together
    assert sizes[-w:] == [sizes[-1]] * w  # one short task per worker at the very end


def test_one_worker_uses_as_few_partitions_as_the_cap_allows():
    assert partition_bounds(10, 1) == [0, 10]
    assert len(partition_bounds(MAX_PARTITION * 2 + 1, 1)) - 1 == 3


@pytest.mark.parametrize(("n", "k"), [(10, 1), (10, 3), (10, 10), (10, 11), (12_345, 1000)])
def test_explicit_partition_size_is_exact(n, k):
    sizes = _sizes(partition_bounds(n, 8, partition_size=k))
    assert all(s == k for s in sizes[:-1]) and 0 < sizes[-1] <= k
    assert sum(sizes) == n


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_bad_partition_size_is_a_metalab_error(bad):
    with pytest.raises(metalab.ExperimentError, match="partition_size"):
        partition_bounds(10, 2, partition_size=bad)


def test_empty_plan():
    assert partition_bounds(0, 4) == [0, 0]


def test_to_dask_follows_the_bounds():
    plan = pd.DataFrame({"run_id": [f"r{i}" for i in range(1000)], "x": range(1000)})
    ddf = to_dask(plan, n_workers=2, partition_size=None)
    parts = [len(ddf.get_partition(i).compute()) for i in range(ddf.npartitions)]
    assert parts == _sizes(partition_bounds(1000, 2))
    assert ddf.compute()["run_id"].tolist() == plan["run_id"].tolist()


def test_partition_size_controls_tasks_in_a_real_sweep(tmp_path):
    @metalab.operation
    def op(params):
        return {"y": params["x"] * 2}

    exp = metalab.Experiment(
        name="parts",
        version="1",
        context={},
        operation=op,
        params=metalab.grid(x=list(range(25))),
        seeds=metalab.seeds(base=1),
    )
    res = metalab.run(exp, store=tmp_path / "s", partition_size=10)
    assert len(res.to_pandas()) == 25
    # three partitions -> three record files (before any compaction, which needs 16)
    assert len(list((tmp_path / "s" / "records").glob("*.parquet"))) == 3
