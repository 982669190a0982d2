"""Records are durable while the sweep runs, and compaction keeps the file count small."""

from __future__ import annotations

import time

import pytest

import metalab
from metalab.store.store import COMPACT_AT_FILES


def _files(folder) -> list:
    return [p for p in folder.iterdir() if p.suffix == ".parquet"]


def test_records_are_readable_while_the_sweep_runs(tmp_path):
    store = tmp_path / "s"
    seen: dict[int, int] = {}

    @metalab.operation(name="peek")
    def peek(params, capture):
        x = params["x"]
        if x in (30, 79):  # another reader looks at the store mid-sweep
            seen[x] = len(metalab.load_results(store))
        capture.metric("y", x)

    exp = metalab.Experiment(name="p", operation=peek, params=metalab.grid(x=list(range(80))))
    metalab.run(exp, store=store)  # one partition: nothing reaches Parquet before its end
    # Runs that finished are in the journal: at most a few unflushed ones are missing.
    assert 30 - 5 <= seen[30] <= 30
    assert 79 - 5 <= seen[79] <= 79


@pytest.mark.slow
def test_2000_runs_in_many_partitions_become_a_handful_of_files(tmp_path):
    store = tmp_path / "s"

    @metalab.operation(name="many")
    def many(params, capture):
        if params["x"] % 100 == 7:
            raise ValueError("a few runs fail, so every resume has work to do")
        capture.metric("y", params["x"])
        capture.metric("s", 1.0, step=0)

    def exp(n: int) -> metalab.Experiment:
        return metalab.Experiment(name="m", operation=many, params=metalab.grid(x=list(range(n))))

    res = metalab.run(exp(2000), store=store, partition_size=50)  # 40 partitions
    assert len(res) == 2000
    assert len(_files(store / "records")) <= 2
    assert len(_files(store / "metrics")) <= 2
    for i in range(6):  # resumed sweeps: new runs, failed runs retried
        res = metalab.run(exp(2000 + 50 * (i + 1)), store=store, partition_size=50)
        assert len(res) == 2000 + 50 * (i + 1)
        assert len({r for r in res.to_pandas()["run_id"]}) == len(res)
        assert len(_files(store / "records")) < COMPACT_AT_FILES
    assert not list((store / "journal").iterdir())


def test_a_slow_run_is_on_disk_before_the_next_run_starts(tmp_path):
    """Lines are batched for fast runs, but a run slower than 20 ms is flushed at once."""
    store = tmp_path / "s"
    seen: dict[int, int] = {}

    @metalab.operation(name="slow_then_peek")
    def op(params, capture):
        x = params["x"]
        if x == 1:
            time.sleep(0.05)  # slower than the 20 ms flush threshold
        elif x == 2:  # both earlier lines must already be readable by anyone
            seen[x] = len(metalab.load_results(store))
        capture.metric("y", x)

    exp = metalab.Experiment(name="f", operation=op, params=metalab.grid(x=[0, 1, 2, 3]))
    metalab.run(exp, store=store)
    assert seen[2] == 2  # with 4-run batches alone it would be 0
