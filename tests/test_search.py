"""metalab.optimize: sequential searches equal hand-driven Optuna, replicates, duplicates,
results (best, trials, history, show) and user errors (issue 14)."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

import metalab
from metalab.errors import ParamSpaceError, ResultsError

optuna = pytest.importorskip("optuna")

SPACE = {
    "x": metalab.uniform(-2, 2),
    "lr": metalab.loguniform(1e-4, 1e-1),
    "k": metalab.randint(0, 4),
    "kind": metalab.choice(["a", "b"]),
    "z": metalab.normal(0, 1),
}


def objective(p):
    return (
        (p["x"] - 0.5) ** 2
        + math.log10(p["lr"]) ** 2 / 10
        + p["k"]
        + (p["kind"] == "b")
        + abs(p["z"])
    )


@metalab.operation(name="obj", version="1")
def obj(params, capture):
    capture.metric("loss", objective(params))


def _exp(source, reps=1):
    return metalab.Experiment(
        name="s",
        version="1",
        operation=obj,
        params=source,
        seeds=metalab.seeds(base=3, replicates=reps),
    )


def _by_hand(sampler, n):
    """Optuna driven by hand with ask/tell on the same objective."""
    from metalab.search.space import to_config, to_optuna

    study = optuna.create_study(direction="minimize", sampler=sampler)
    dists = to_optuna(SPACE)
    out = []
    for _ in range(n):
        t = study.ask(dists)
        cfg = to_config(SPACE, t.params)
        study.tell(t, objective(cfg))
        out.append(cfg)
    return out


@pytest.mark.parametrize(
    "name, sampler",
    [
        ("tpe", lambda: optuna.samplers.TPESampler(seed=7)),
        ("random", lambda: optuna.samplers.RandomSampler(seed=7)),
    ],
)
def test_sequential_search_equals_hand_driven_optuna(tmp_path, name, sampler):
    n = 14
    src = metalab.optimize(SPACE, metric="loss", n_trials=n, sampler=name, seed=7, batch_size=1)
    result = metalab.run(_exp(src), store=tmp_path / "s")
    trials = result.trials()
    assert trials["trial"].tolist() == list(range(n))
    got = [dict(c) for c in src]
    assert got == _by_hand(sampler(), n)
    assert len(result) == n and result.counts()["success"] == n
    # The records carry the trial number; a second run() asks nothing new.
    assert sorted(result.to_pandas(full=True)["trial"].tolist()) == list(range(n))
    again = metalab.run(_exp(src), store=tmp_path / "s")
    assert len(again) == n and [dict(c) for c in src] == got


def test_an_optuna_sampler_object_is_accepted(tmp_path):
    src = metalab.optimize(
        SPACE,
        metric="loss",
        n_trials=6,
        sampler=optuna.samplers.RandomSampler(seed=1),
        batch_size=1,
    )
    metalab.run(_exp(src), store=tmp_path / "s")
    assert [dict(c) for c in src] == _by_hand(optuna.samplers.RandomSampler(seed=1), 6)


CALLS: list[str] = []


@metalab.operation(name="noisy", version="1")
def noisy(params, seeds, capture):
    CALLS.append(capture.run_id)
    capture.metric("loss", params["x"] ** 2 + seeds.rng().random())


def test_replicates_are_aggregated_and_duplicates_run_once(tmp_path):
    CALLS.clear()
    space = {"x": metalab.choice([0, 1])}  # 2 configurations for 8 trials: duplicates
    src = metalab.optimize(space, metric="loss", n_trials=8, sampler="random", seed=0, batch_size=1)
    exp = metalab.Experiment(
        name="n",
        version="1",
        operation=noisy,
        params=src,
        seeds=metalab.seeds(base=1, replicates=3),
    )
    result = metalab.run(exp, store=tmp_path / "n")
    assert len(src.decided) == 8 and len({str(c) for c in src.decided}) == 2
    assert len(CALLS) == len(set(CALLS)) == 6  # each configuration x replicate ran once
    table = result.trials()
    assert len(table) == 2 and set(table["n_runs"]) == {3}
    runs = result.to_pandas()
    for _, row in table.iterrows():
        vals = runs[runs["x"] == row["x"]]["loss"]
        assert row["loss"] == pytest.approx(vals.mean())
    best = result.best()
    assert best["params"] == {"x": 0} and len(best["run_ids"]) == 3
    median = metalab.optimize(space, metric="loss", n_trials=2, aggregate="median", seed=0)
    exp2 = metalab.Experiment(
        name="m",
        version="1",
        operation=noisy,
        params=median,
        seeds=metalab.seeds(base=1, replicates=3),
    )
    t2 = metalab.run(exp2, store=tmp_path / "m").trials()
    runs2 = metalab.load_results(tmp_path / "m").to_pandas()
    for _, row in t2.iterrows():
        assert row["loss"] == pytest.approx(runs2[runs2["x"] == row["x"]]["loss"].median())


def test_best_history_and_show(tmp_path):
    src = metalab.optimize(SPACE, metric="loss", n_trials=10, seed=2, direction="minimize")
    result = metalab.run(_exp(src), store=tmp_path / "s")
    table = result.trials()
    best = result.best()
    assert best["value"] == table["loss"].min()
    assert objective({**best["params"]}) == pytest.approx(best["value"])
    ax = result.plot_history()
    assert ax.get_xlabel() == "trial"
    fig = result.plot_params()
    assert [a.get_xlabel() for a in fig.axes] == ["k", "kind", "lr", "x", "z"]
    assert fig.axes[2].get_xscale() == "log"
    out = subprocess.run(
        [sys.executable, "-m", "metalab", "show", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"search: 10 of 10 trials, best loss {best['value']:.6g}" in out
    with pytest.raises(ResultsError, match=r"metalab\.optimize"):
        metalab.run(
            metalab.Experiment(
                name="g",
                operation=obj,
                params=metalab.grid(x=[0.0], lr=[0.1], k=[0], kind=["a"], z=[0.0]),
            ),
            store=tmp_path / "g",
        ).best()


def test_maximize_grid_and_cmaes(tmp_path):
    space = {
        "x": metalab.choice([-1.0, 0.0, 0.5]),
        "lr": 0.01,
        "k": metalab.randint(0, 2),
        "kind": "a",
        "z": 0.0,
    }
    src = metalab.optimize(space, metric="loss", n_trials=6, sampler="grid", direction="maximize")
    r = metalab.run(_exp(src), store=tmp_path / "g")
    assert len({str(c) for c in src.decided}) == 6  # the grid, each point once
    assert r.best()["params"]["k"] == 1 and r.best()["params"]["x"] == -1.0
    cm = metalab.optimize(
        {
            "x": metalab.uniform(-2, 2),
            "lr": metalab.loguniform(1e-3, 1e-1),
            "k": 0,
            "kind": "a",
            "z": 0.0,
        },
        metric="loss",
        n_trials=5,
        sampler="cmaes",
        seed=0,
    )
    assert len(metalab.run(_exp(cm), store=tmp_path / "c")) == 5


@metalab.operation(name="waits", version="1")
def waits_for_asked(params, capture, context):
    """Waits (bounded) until the search's ledger lists 4 trials: with 2 workers, the
    two running and the two asked ahead of them."""
    ledger = Path(context["store"]) / "search" / "trials.jsonl"
    deadline = time.monotonic() + 120
    lines = 0
    while lines < 4 and time.monotonic() < deadline:
        lines = ledger.read_text().count("\n") if ledger.exists() else 0
        time.sleep(0.01)
    capture.metric("loss", params["x"] ** 2)
    capture.metric("asked", lines)


def test_a_cluster_search_asks_one_trial_ahead_per_worker(tmp_path):
    """Each worker holds a trial besides the one it runs: it never waits for the driver."""
    src = metalab.optimize(
        {"x": metalab.uniform(-1, 1)}, metric="loss", n_trials=6, sampler="random", seed=0
    )
    store = tmp_path / "s"
    exp = metalab.Experiment(
        name="ahead",
        version="1",
        operation=waits_for_asked,
        params=src,
        context={"store": str(store)},
    )
    result = metalab.run(exp, store=store, executor=metalab.ProcessExecutor(max_workers=2))
    assert sorted(result.trials()["trial"]) == list(range(6))
    assert (result.to_pandas()["asked"] >= 4).all()  # 2 running + 2 asked ahead


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sampler": "bayes"}, "tpe, random, cmaes, grid"),
        ({"pruner": "early"}, "asha, median, hyperband"),
        ({"direction": "down"}, "'minimize' or 'maximize'"),
        ({"aggregate": "max"}, "'mean' or 'median'"),
        ({"n_trials": 0}, "n_trials"),
        ({"batch_size": 0}, "batch_size"),
        ({"space": {}}, "non-empty dict"),
        ({"space": {"x": metalab.choice([1, 2], p=[0.5, 0.5])}}, "drop p="),
        ({"sampler": object()}, "optuna.samplers object"),
    ],
)
def test_user_mistakes_name_the_fix(kwargs, match):
    args = {"space": {"x": metalab.uniform(0, 1)}, "metric": "loss", "n_trials": 3, **kwargs}
    with pytest.raises(ParamSpaceError, match=match):
        src = metalab.optimize(**args)
        from metalab.search.study import make_sampler

        make_sampler(src.sampler, 0, src.space)


def test_grid_needs_discrete_values(tmp_path):
    src = metalab.optimize({"x": metalab.uniform(0, 1)}, metric="loss", n_trials=2, sampler="grid")
    with pytest.raises(ParamSpaceError, match="choice"):
        metalab.run(_exp(src), store=tmp_path / "s")
