"""BaseException in an operation (sys.exit, asyncio.CancelledError, GeneratorExit...) is
that run's failure: the sweep goes on, on every executor, and nothing runs twice."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

import metalab


def _exp(op, n: int) -> metalab.Experiment:
    return metalab.Experiment(name="base", operation=op, params=metalab.grid(x=list(range(n))))


def _make_op(log: Path):
    @metalab.operation(name="base_exc")
    def op(params, capture):
        with open(log, "a") as f:
            f.write(f"{params['x']}\n")
        x = params["x"]
        if x == 1:
            sys.exit(3)
        if x == 2:
            sys.exit(0)
        if x == 3:
            raise asyncio.CancelledError("cancelled inside the operation")
        if x == 4:
            raise GeneratorExit("generator exit")
        capture.metric("y", x)

    return op


def _check(res: metalab.Results, log: Path) -> None:
    by_x = {r.params["x"]: r for r in res}
    assert len(by_x) == 7  # every run has a record: the sweep went on
    assert {x: r.status for x, r in by_x.items()} == {
        0: "success",
        1: "failed",
        2: "failed",
        3: "failed",
        4: "failed",
        5: "success",
        6: "success",
    }
    assert by_x[1].error["type"] == "SystemExit"
    assert by_x[1].error["message"] == "3"
    assert by_x[3].error["type"] == "CancelledError"
    assert by_x[4].error["type"] == "GeneratorExit"
    executed = [int(v) for v in log.read_text().split()]
    assert sorted(executed) == list(range(7))  # each run executed exactly once


@pytest.mark.parametrize(
    "make_executor",
    [
        pytest.param(lambda: None, id="default"),
        pytest.param(lambda: metalab.ThreadExecutor(max_workers=2), id="threads"),
    ],
)
def test_base_exceptions_are_recorded_in_process(tmp_path, make_executor):
    log = tmp_path / "exec.log"
    res = metalab.run(_exp(_make_op(log), 7), store=tmp_path / "s", executor=make_executor())
    _check(res, log)


@pytest.mark.cluster
def test_base_exceptions_are_recorded_on_process_executor(tmp_path):
    log = tmp_path / "exec.log"
    res = metalab.run(
        _exp(_make_op(log), 7),
        store=tmp_path / "s",
        executor=metalab.ProcessExecutor(max_workers=2),
    )
    _check(res, log)


def test_base_exceptions_are_recorded_with_a_timeout(tmp_path):
    log = tmp_path / "exec.log"
    res = metalab.run(_exp(_make_op(log), 7), store=tmp_path / "s", timeout_s=60)
    _check(res, log)
