"""Raising, retried, hanging and crashing operations; NaN/inf metrics (in-process)."""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import pytest

import metalab
from metalab.errors import ExperimentError


def _log(path: Path, x: int) -> int:
    """Append x to the side channel; returns how often x was executed (this time included)."""
    with open(path, "a") as f:
        f.write(f"{x}\n")
    return path.read_text().split("\n").count(str(x))


def _counts(res: metalab.Results) -> dict[str, int]:
    return {k: v for k, v in res.counts().items() if v}


def _exp(op, n: int, name: str = "f") -> metalab.Experiment:
    return metalab.Experiment(name=name, operation=op, params=metalab.grid(x=list(range(n))))


def test_always_crashing_operation_records_failed_and_goes_on(tmp_path):
    @metalab.operation(name="crash")
    def crash(params):
        raise ZeroDivisionError(f"cannot divide x={params['x']}")

    res = metalab.run(_exp(crash, 7), store=tmp_path / "s")
    assert len(res) == 7
    assert _counts(res) == {"failed": 7}
    for run in res:
        err = run.error
        assert err["type"] == "ZeroDivisionError"
        assert err["message"] == f"cannot divide x={run.params['x']}"
        assert "raise ZeroDivisionError" in err["traceback"]
        assert err["traceback"].strip().endswith(err["message"])


def test_fails_once_with_retries_1_succeeds(tmp_path):
    log = tmp_path / "exec.log"

    @metalab.operation(name="flaky")
    def flaky(params, capture):
        if _log(log, params["x"]) == 1:
            raise ConnectionError("first try fails")
        capture.metric("y", params["x"])

    res = metalab.run(_exp(flaky, 5), store=tmp_path / "s", retries=1)
    assert _counts(res) == {"success": 5}
    assert sorted(int(v) for v in log.read_text().split()) == sorted(list(range(5)) * 2)
    assert [r.attempt for r in res] == [1] * 5  # retries are inside one attempt
    assert [r.record["retries"] for r in res] == [1] * 5  # ... and counted there
    assert (res.table(as_dataframe=True)["retries"] == 1).all()


def test_retries_0_records_failed_then_retry_failed_controls_resume(tmp_path):
    log = tmp_path / "exec.log"

    @metalab.operation(name="flaky")
    def flaky(params):
        if _log(log, params["x"]) == 1 and params["x"] % 2:
            raise ConnectionError("first try fails")

    store = tmp_path / "s"
    res = metalab.run(_exp(flaky, 6), store=store)
    assert _counts(res) == {"success": 3, "failed": 3}
    n = len(log.read_text().split())
    res = metalab.run(_exp(flaky, 6), store=store, retry_failed=False)
    assert len(log.read_text().split()) == n  # failed runs kept as they are
    assert _counts(res) == {"success": 3, "failed": 3}
    res = metalab.run(_exp(flaky, 6), store=store)  # retry_failed=True is the default
    assert _counts(res) == {"success": 6}
    assert sorted(int(v) for v in log.read_text().split()[n:]) == [1, 3, 5]
    assert {r.params["x"]: r.attempt for r in res} == {0: 1, 1: 2, 2: 1, 3: 2, 4: 1, 5: 2}


def _hanging_op(log: Path, flag: Path):
    @metalab.operation(name="hang")
    def hang(params, capture):
        with open(log, "a") as f:
            f.write(f"{params['x']} {os.getpid()}\n")
        if params["x"] == 1 and not flag.exists():
            time.sleep(600)
        capture.metric("y", params["x"])
        capture.artifact("a", {"x": params["x"]})

    return hang


def _pids(log: Path, x: int) -> list[int]:
    return [
        int(p) for a, p in (line.split() for line in log.read_text().splitlines()) if int(a) == x
    ]


@pytest.mark.parametrize("executor", [None, "thread"], ids=["default", "thread"])
def test_hang_past_timeout_is_recorded_and_the_sweep_goes_on(tmp_path, executor):
    log, flag, store = tmp_path / "exec.log", tmp_path / "flag", tmp_path / "s"
    exe = metalab.ThreadExecutor(2) if executor == "thread" else None
    exp = _exp(_hanging_op(log, flag), 4)
    res = metalab.run(exp, store=store, executor=exe, timeout=1.0)
    assert _counts(res) == {"success": 3, "timeout": 1}
    hung = next(r for r in res if r.status == "timeout")
    assert hung.params == {"x": 1}
    assert hung.error["type"] == "Timeout"
    assert "timeout=1 s" in hung.error["message"]
    for r in res:  # metrics and artifacts come back from the child process
        if r.status != "success":
            continue
        assert r.metrics == {"y": r.params["x"]}
        assert r.artifact("a") == {"x": r.params["x"]}
    # The hung run's process was killed (reclaimed), not left running.
    (pid,) = _pids(log, 1)
    assert pid != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

    n = len(log.read_text().splitlines())
    res = metalab.run(exp, store=store, timeout=1.0, retry_failed=False)
    assert len(log.read_text().splitlines()) == n
    assert _counts(res) == {"success": 3, "timeout": 1}
    flag.touch()
    res = metalab.run(exp, store=store, timeout=1.0)  # retry_failed re-runs timeouts
    assert _counts(res) == {"success": 4}
    assert len(log.read_text().splitlines()) == n + 1
    assert res[hung.run_id].attempt == 2


def test_timeout_survives_an_operation_that_kills_its_process(tmp_path):
    # In-process, os._exit would end the driver; with timeout= the run is in a child.
    @metalab.operation(name="exit")
    def exits(params):
        if params["x"] == 2:
            os._exit(7)
        if params["x"] == 3:
            os.kill(os.getpid(), signal.SIGKILL)

    res = metalab.run(_exp(exits, 5), store=tmp_path / "s", timeout=30)
    assert _counts(res) == {"success": 3, "failed": 2}
    errs = {r.params["x"]: r.error for r in res.failed}
    assert {e["type"] for e in errs.values()} == {"WorkerDied"}
    assert "exited with code 7" in errs[2]["message"]
    assert "SIGKILL" in errs[3]["message"]


@pytest.mark.parametrize("bad", [0, -1, "10", True, float("nan")])
def test_bad_timeout_is_rejected(tmp_path, bad):
    @metalab.operation(name="ok")
    def ok(params):
        pass

    with pytest.raises(ExperimentError, match="timeout must be a number of seconds"):
        metalab.run(_exp(ok, 1), store=tmp_path / "s", timeout=bad)


def test_nan_and_inf_metrics_round_trip(tmp_path):
    values = {0: math.nan, 1: math.inf, 2: -math.inf, 3: 1.5}

    @metalab.operation(name="odd")
    def odd(params, capture):
        v = values[params["x"]]
        capture.metric("v", v)
        capture.metric("s", v, step=0)
        capture.metric("s", 0.0, step=1)

    store = tmp_path / "s"
    res = metalab.run(_exp(odd, 4), store=store)
    assert _counts(res) == {"success": 4}
    got = {r.params["x"]: r.metrics["v"] for r in res}
    assert math.isnan(got[0]) and got[1] == math.inf and got[2] == -math.inf and got[3] == 1.5
    first = res[0] if res[0].params["x"] == 0 else next(r for r in res if r.params["x"] == 0)
    assert math.isnan(first.metric_series("s")[0])
    table = metalab.load_results(store).table(as_dataframe=True).sort_values("x")
    assert table["v"].isna().tolist() == [True, False, False, False]
    assert table["v"].tolist()[1:] == [math.inf, -math.inf, 1.5]
    res = metalab.run(_exp(odd, 4), store=store)  # NaN is a value, not a missing record
    assert _counts(res) == {"success": 4}
