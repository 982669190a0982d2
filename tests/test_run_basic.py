"""metalab.run end to end: failures, resume, dedup, and every executor on one code path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import metalab
from metalab import DaskExecutor, ProcessExecutor, ThreadExecutor


@metalab.operation(name="flaky", version="1")
def flaky(context, params, seeds, capture):
    """Appends one line per execution to a side-channel file; x == 2 fails until 'fixed'."""
    with open(context["log"], "a") as f:
        f.write(json.dumps(params) + "\n")
    if params["x"] == 2 and not Path(context["fix"]).exists():
        raise ValueError(f"bad x={params['x']}")
    capture.metric("u", float(seeds.numpy().random()))
    return {"y": params["x"] * 10}


def _exp(tmp_path: Path, xs=(0, 1, 2, 3, 4), replicates: int = 1) -> metalab.Experiment:
    return metalab.Experiment(
        name="flaky",
        operation=flaky,
        context={"log": str(tmp_path / "calls.log"), "fix": str(tmp_path / "fixed")},
        params=metalab.grid(x=list(xs)),
        seeds=metalab.seeds(base=3, replicates=replicates),
    )


def _executions(tmp_path: Path) -> list[dict]:
    log = tmp_path / "calls.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def _check_sweep(res: metalab.Results, exp: metalab.Experiment) -> None:
    plan = exp.plan()
    assert len(res) == len(plan)
    df = res.table(as_dataframe=True)
    assert sorted(df["run_id"]) == sorted(plan["run_id"])
    assert df["run_id"].is_unique
    by_x = {int(r.params["x"]): r for r in res}
    for x, run in by_x.items():
        if x == 2:
            assert run.status == "failed"
            assert run.error["type"] == "ValueError"
            assert run.error["message"] == "bad x=2"
            assert "Traceback" in run.error["traceback"]
            assert "in flaky" in run.error["traceback"]
            assert run.error["traceback"].rstrip().endswith("ValueError: bad x=2")
            assert run.metrics == {}
        else:
            assert run.status == "success", run.error
            assert run.metrics["y"] == 10 * x
            assert run.metrics["u"] == metalab.SeedBundle(3, (run.replicate,)).numpy().random()
            assert run.error is None


def test_failing_operation_is_recorded_and_the_sweep_goes_on(tmp_path):
    exp = _exp(tmp_path)
    res = metalab.run(exp)
    _check_sweep(res, exp)
    assert len(_executions(tmp_path)) == 5
    assert len(res.successful) == 4 and len(res.failed) == 1
    assert res.failed[0].params == {"x": 2}
    df = res.table(as_dataframe=True)
    assert df.loc[df["x"] == 2, "status"].item() == "failed"
    assert df.loc[df["x"] == 2, "error_type"].item() == "ValueError"
    assert df["status"].tolist().count("success") == 4


def test_resume_reruns_only_the_failed_run(tmp_path):
    exp = _exp(tmp_path, replicates=2)
    first = metalab.run(exp)
    assert len(first) == 10 and len(first.failed) == 2
    assert len(_executions(tmp_path)) == 10

    (tmp_path / "fixed").touch()
    second = metalab.run(exp)  # resume=True is the default
    runs = _executions(tmp_path)[10:]
    assert runs == [{"x": 2}, {"x": 2}]
    assert len(second) == 10
    assert second.table(as_dataframe=True)["run_id"].is_unique
    # rows follow the plan, not the order in which runs were (re-)executed
    assert [r.run_id for r in second] == exp.plan()["run_id"].tolist()
    assert second.table(as_dataframe=True)["run_id"].tolist() == exp.plan()["run_id"].tolist()
    assert all(r.status == "success" for r in second)
    assert {r.attempt for r in second if r.params["x"] == 2} == {2}
    assert {r.attempt for r in second if r.params["x"] != 2} == {1}

    third = metalab.run(exp, resume=True)
    assert len(_executions(tmp_path)) == 12  # nothing left to do
    assert len(third) == 10

    loaded = metalab.load_results(Path("runs") / "flaky")
    assert len(loaded) == 10
    assert loaded.table(as_dataframe=True)["run_id"].is_unique


def test_resume_false_reruns_everything(tmp_path):
    exp = _exp(tmp_path)
    metalab.run(exp)
    assert len(_executions(tmp_path)) == 5
    res = metalab.run(exp, resume=False)
    assert len(_executions(tmp_path)) == 10
    assert len(res) == 5
    df = res.table(as_dataframe=True)
    assert df["run_id"].is_unique
    # the latest attempt wins
    assert set(df["attempt"]) == {2}
    # raw Parquet keeps every attempt, readers deduplicate by run_id
    import pandas as pd

    raw = pd.read_parquet(Path("runs/flaky/records"))
    assert len(raw) == 10 and raw["run_id"].nunique() == 5


def test_a_new_param_value_runs_only_the_new_runs(tmp_path):
    (tmp_path / "fixed").touch()
    metalab.run(_exp(tmp_path, xs=(0, 1)))
    res = metalab.run(_exp(tmp_path, xs=(0, 1, 5)))
    assert [e["x"] for e in _executions(tmp_path)] == [0, 1, 5]
    assert len(res) == 3


def test_results_of_run_are_only_this_experiments_runs(tmp_path):
    (tmp_path / "fixed").touch()
    metalab.run(_exp(tmp_path, xs=(0, 1, 2)))
    res = metalab.run(_exp(tmp_path, xs=(1,)))
    assert [r.params for r in res] == [{"x": 1}]
    assert len(metalab.load_results("runs/flaky")) == 3


def test_thread_executor(tmp_path):
    exp = _exp(tmp_path, replicates=3)
    res = metalab.run(exp, executor=ThreadExecutor(max_workers=2), partition_size=2)
    assert len(res) == 15
    assert len(res.failed) == 3
    assert len(_executions(tmp_path)) == 15
    records = list(Path("runs/flaky/records").glob("*.parquet"))
    assert len(records) == 8  # one file per partition: the sweep really was split


def test_default_store_and_custom_store(tmp_path):
    (tmp_path / "fixed").touch()
    metalab.run(_exp(tmp_path, xs=(0,)))
    assert (Path("runs") / "flaky" / "manifest.json").exists()
    metalab.run(_exp(tmp_path, xs=(0,)), store=tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / "manifest.json").exists()
    assert len(_executions(tmp_path)) == 2  # another store has no history


def test_run_rejects_non_experiments():
    with pytest.raises(metalab.ExperimentError, match="Experiment"):
        metalab.run("not an experiment")
    with pytest.raises(metalab.ExperimentError, match="executor"):
        metalab.run(
            metalab.Experiment(name="x", operation=flaky, context={"log": "l", "fix": "f"}),
            executor="processes",
        )


@metalab.operation(name="pid", version="1")
def pid(params, capture):
    capture.metric("pid", os.getpid())


@pytest.mark.parametrize("name", ["timeout_s", "timeout"])
def test_timeout_s_and_its_old_name_run_each_run_in_a_child(tmp_path, name):
    exp = metalab.Experiment(name="pid", operation=pid, params=metalab.grid(x=[0, 1]))
    res = metalab.run(exp, store=tmp_path / "s", **{name: 60})
    assert [r.status for r in res] == ["success", "success"]
    assert os.getpid() not in {r.metrics["pid"] for r in res}
    res = metalab.run(exp, store=tmp_path / "s", resume=False)  # no limit: in this process
    assert {r.metrics["pid"] for r in res} == {os.getpid()}


def test_timeout_s_and_timeout_together_is_an_error_naming_both(tmp_path):
    exp = metalab.Experiment(name="pid", operation=pid, params=metalab.grid(x=[0]))
    with pytest.raises(metalab.ExperimentError, match=r"timeout_s=5 and timeout=5: give only"):
        metalab.run(exp, store=tmp_path / "s", timeout_s=5, timeout=5)
    with pytest.raises(metalab.ExperimentError, match="timeout_s must be a number of seconds"):
        metalab.run(exp, store=tmp_path / "s", timeout_s=-1)
    assert not (tmp_path / "s").exists()


@pytest.mark.cluster
def test_process_executor_on_a_local_cluster(tmp_path):
    @metalab.operation(name="where", version="1")
    def where(params, capture):
        capture.metric("pid", os.getpid())
        if params["x"] == 2:
            raise RuntimeError("boom")

    exp = metalab.Experiment(
        name="where",
        operation=where,
        params=metalab.grid(x=list(range(8))),
        seeds=metalab.seeds(base=1, replicates=2),
    )
    res = metalab.run(exp, executor=ProcessExecutor(max_workers=2))
    assert len(res) == 16
    assert len(res.failed) == 2
    assert {r.error["message"] for r in res.failed} == {"boom"}
    pids = {r.metrics["pid"] for r in res.successful}
    assert os.getpid() not in pids  # runs happened in worker processes
    workers = {r.record["worker"] for r in res}
    assert all(w.startswith("tcp://") for w in workers)
    # resume on the cluster as well: only the failed runs run again
    again = metalab.run(exp, executor=ProcessExecutor(max_workers=2))
    assert len(again) == 16
    assert sum(r.attempt == 2 for r in again) == 2


@pytest.mark.cluster
def test_dask_executor_with_a_user_client_does_not_close_it(tmp_path, client):
    exp = _exp(tmp_path, replicates=2)
    res = metalab.run(exp, executor=DaskExecutor(client))
    _check_sweep(res, exp)
    assert len(_executions(tmp_path)) == 10
    assert client.status == "running"
    assert client.submit(sum, [1, 2]).result() == 3  # still usable
    (tmp_path / "fixed").touch()
    res = metalab.run(exp, executor=DaskExecutor(client))
    assert len(_executions(tmp_path)) == 12
    assert all(r.status == "success" for r in res)
    assert client.status == "running"


@pytest.mark.cluster
def test_dask_executor_with_a_cluster_or_address(tmp_path, local_cluster):
    (tmp_path / "fixed").touch()
    exp = _exp(tmp_path, xs=(0, 1))
    metalab.run(exp, executor=DaskExecutor(local_cluster))
    metalab.run(exp, executor=DaskExecutor(local_cluster.scheduler_address), resume=False)
    assert len(_executions(tmp_path)) == 4
    assert local_cluster.status.name == "running"
