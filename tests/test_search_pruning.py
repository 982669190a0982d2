"""Early stopping: capture.should_stop() with a search's pruner, on worker processes (issue 14)."""

from __future__ import annotations

import os
import time

import pytest

import metalab
from metalab.capture import Capture

optuna = pytest.importorskip("optuna")

EPOCHS = 10


@metalab.operation(name="train", version="1")
def train(params, capture, context):
    fd = os.open(context["side"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (capture.run_id + "\n").encode())
    os.close(fd)
    for epoch in range(EPOCHS):
        time.sleep(0.01)
        capture.metric("val_loss", params["x"] + 1.0 / (epoch + 1), step=epoch)
        if capture.should_stop():
            break


def _exp(tmp_path, pruner, n=12):
    params = metalab.optimize(
        {"x": metalab.uniform(0, 10)},
        metric="val_loss",
        n_trials=n,
        sampler="random",
        seed=3,
        pruner=pruner,
    )
    return metalab.Experiment(
        name="prune",
        version="1",
        operation=train,
        params=params,
        context={"side": str(tmp_path / "side.txt")},
    )


def test_pruned_runs_on_process_executor(tmp_path):
    exp = _exp(tmp_path, "median")
    store = tmp_path / "store"
    result = metalab.run(exp, store=store, executor=metalab.ProcessExecutor(max_workers=2))
    counts = result.counts()
    assert counts.get("pruned", 0) >= 1, counts
    assert counts["success"] + counts["pruned"] == 12 and counts["failed"] == 0
    runs = result.to_pandas()
    pruned = runs[runs["status"] == "pruned"]
    series = result.series("val_loss")
    for rid in pruned["run_id"]:
        steps = series[series["run_id"] == rid]
        assert 1 <= len(steps) < EPOCHS  # stopped early, its stepped metrics kept
    table = result.trials()
    assert set(table["status"]) <= {"complete", "pruned"}
    best = result.best()
    assert best["status"] == "complete"
    complete = table[table["status"] == "complete"]
    assert best["value"] == complete["val_loss"].min()
    assert result.best(include_pruned=True)["value"] <= best["value"]
    # Not re-run on resume: the side channel gets no new line.
    before = (tmp_path / "side.txt").read_text().split()
    again = metalab.run(exp, store=store)
    assert (tmp_path / "side.txt").read_text().split() == before
    assert again.counts()["pruned"] == counts["pruned"]


@pytest.mark.parametrize("pruner", ["asha", "hyperband", "median"])
def test_every_pruner_name_stops_bad_runs_in_process(tmp_path, pruner):
    result = metalab.run(_exp(tmp_path, pruner, n=10), store=tmp_path / pruner)
    counts = result.counts()
    assert counts["failed"] == 0 and counts["success"] + counts.get("pruned", 0) == 10


def test_optuna_pruner_object_and_no_pruner(tmp_path):
    obj = optuna.pruners.ThresholdPruner(upper=5.0)
    result = metalab.run(_exp(tmp_path, obj, n=8), store=tmp_path / "t")
    runs = result.to_pandas()
    assert set(runs[runs["x"] > 5.0]["status"]) == {"pruned"}
    assert set(runs[runs["x"] < 4.0]["status"]) == {"success"}
    none = metalab.run(_exp(tmp_path, None, n=4), store=tmp_path / "n")
    assert none.counts()["success"] == 4


def test_should_stop_outside_a_search_is_false():
    cap = Capture("r1", None)
    cap.metric("val_loss", 1.0, step=0)
    assert cap.should_stop() is False
