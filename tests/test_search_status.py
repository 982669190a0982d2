"""A search's progress bar, and its sweep marked incomplete when the cluster fails it."""

from __future__ import annotations

import json

import pytest

import metalab

optuna = pytest.importorskip("optuna")


@metalab.operation(name="sq", version="1")
def sq(params, capture):
    capture.metric("loss", (params["x"] - 0.25) ** 2)


def _exp(n, op=sq):
    src = metalab.optimize({"x": metalab.uniform(-1, 1)}, metric="loss", n_trials=n, seed=1)
    return metalab.Experiment(name="bar_search", version="1", operation=op, params=src)


def test_progress_bar_counts_trials_and_best(tmp_path, capsys):
    result = metalab.run(_exp(6), store=tmp_path / "s", progress=True)
    best = result.best()["value"]
    text = "".join(capsys.readouterr())
    assert "bar_search" in text and "6/6 trials" in text
    assert f"best loss {best:.4g}" in text


def test_search_whose_cluster_cannot_run_it_is_incomplete(tmp_path):
    gpu = metalab.operation(name="gpu", version="1", resources={"GPU": 1})(
        lambda params, capture: capture.metric("loss", 1.0)
    )
    ex = metalab.ProcessExecutor(max_workers=1, worker_timeout_s=2)
    with pytest.raises(metalab.ExecutorError, match="GPU"):
        metalab.run(_exp(3, gpu), store=tmp_path / "s", executor=ex)
    (sweep,) = (tmp_path / "s" / "sweeps").glob("*.json")
    info = json.loads(sweep.read_text())
    assert info["status"] == "incomplete" and "ended" in info


def test_trials_are_folded_into_parquet_in_batches(tmp_path, monkeypatch):
    """Journals of finished trials become one Parquet file per fold, none is left."""
    from metalab.search import execution

    monkeypatch.setattr(execution, "FOLD_EVERY", 3)
    result = metalab.run(_exp(8), store=tmp_path / "s")
    assert sorted(result.trials()["trial"]) == list(range(8))
    folded = list((tmp_path / "s" / "records").glob("*-trials-*.parquet"))
    assert len(folded) == 3  # 3 + 3 trials, then the last 2 when the search ends
    assert not list((tmp_path / "s" / "journal").glob("*.jsonl"))
