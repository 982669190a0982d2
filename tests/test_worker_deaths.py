"""The worker-death limit: a run in flight at two deaths of its process is recorded
``failed`` with error type ``WorkerDied``, after exactly two executions (not three).

Two code paths keep the rule: the partition task on a cluster (a Dask worker dies, Dask
runs the task again, the journals of the dead attempts charge the run) and the child
process of ``timeout_s=`` (the child dies, a new child tries the run again).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import metalab


def _log(path: Path, x: int) -> None:
    with open(path, "a") as f:  # one small O_APPEND write per line: safe across processes
        f.write(f"{x}\n")


def _executions(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().splitlines()]


def _killer_exp(log: Path, victim: int, n: int) -> metalab.Experiment:
    @metalab.operation(name="killer")
    def killer(params, capture):
        _log(log, params["x"])
        if params["x"] == victim:
            os._exit(3)  # takes its process down, every time
        capture.metric("y", params["x"])

    return metalab.Experiment(
        name="deaths", operation=killer, params=metalab.grid(x=list(range(n)))
    )


def _check(res: metalab.Results, log: Path, victim: int, n: int) -> None:
    runs = {r.params["x"]: r for r in res}
    assert sorted(runs) == list(range(n))
    assert {x for x, r in runs.items() if r.status != "success"} == {victim}
    assert runs[victim].status == "failed"
    assert runs[victim].error["type"] == "WorkerDied"
    assert "2 times" in runs[victim].error["message"]
    execs = _executions(log)
    # Two deaths, then recorded without a third execution; the others ran once.
    assert execs.count(victim) == 2
    assert sorted(x for x in execs if x != victim) == [x for x in range(n) if x != victim]


@pytest.mark.cluster
@pytest.mark.slow
def test_a_run_that_kills_its_worker_twice_is_failed_without_a_third_try(tmp_path):
    # One run per partition, so the first (unjournaled) death is charged to the victim too.
    log = tmp_path / "exec.log"
    res = metalab.run(
        _killer_exp(log, victim=2, n=6),
        store=tmp_path / "s",
        executor=metalab.ProcessExecutor(max_workers=2),
        partition_size=1,
    )
    _check(res, log, victim=2, n=6)


def test_a_run_that_kills_its_timeout_child_twice_is_failed_without_a_third_try(tmp_path):
    log = tmp_path / "exec.log"
    res = metalab.run(_killer_exp(log, victim=1, n=4), store=tmp_path / "s", timeout_s=60)
    _check(res, log, victim=1, n=4)
    assert "exited with code 3" in res.failed[0].error["message"]
