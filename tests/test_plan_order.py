"""`metalab table` lists a store's runs in the plan's order, rebuilt from the manifest."""

from __future__ import annotations

import csv
import io

import pytest

import metalab


@metalab.operation(name="plan_order_op")
def op(params):
    return {"y": 1.0}


def _spaces():
    grid = metalab.grid(z=[3, 1, 2], a=["q", "p"])  # axes not in alphabetical order
    manual = metalab.manual([{"b": 5}, {"b": 1, "c": "x"}, {"b": 3}])
    nested = metalab.grid(opt=[{"lr": 0.1, "m": 2}, {"lr": 0.01, "m": 1}], k=[2, 1])
    return {
        "grid": grid,
        "manual": manual,
        "product": metalab.grid(w=[2, 1]) * manual,
        "concat": manual + metalab.grid(b=[9, 0], d=[1.5, 0.5]),
        "nested": nested,
    }


def _table_rows(store) -> list[dict[str, str]]:
    from metalab.cli import main

    assert main(["table", str(store), "--csv", str(store.parent / "t.csv")]) == 0
    return list(csv.DictReader(io.StringIO((store.parent / "t.csv").read_text())))


@pytest.mark.parametrize("kind", sorted(_spaces()))
def test_table_follows_the_plan_whatever_order_runs_were_stored(tmp_path, kind):
    space = _spaces()[kind]
    exp = metalab.Experiment(
        name=f"order_{kind}", operation=op, params=space, seeds=metalab.seeds(replicates=2)
    )
    plan = exp.plan()["run_id"].tolist()
    # store the runs in reverse plan order, a few at a time: no accident of writing order
    for n in range(2, len(plan) + 2, 3):
        subset = [c for c in space][-((n + 1) // 2) :]
        part = metalab.Experiment(
            name=f"order_{kind}", operation=op, params=metalab.manual(subset),
            seeds=metalab.seeds(replicates=2),
        )  # fmt: skip
        metalab.run(part, store=tmp_path / "s", progress=False)
    metalab.run(exp, store=tmp_path / "s", progress=False)  # the latest plan: the full space
    rows = _table_rows(tmp_path / "s")
    full = {r: i for i, r in enumerate(plan)}
    shown = [r["run_id"] for r in rows]
    assert len(shown) == len(plan)
    assert sorted(shown, key=lambda s: next(full[r] for r in full if r.startswith(s))) == shown


def test_a_random_source_is_listed_by_value(tmp_path):
    space = metalab.random({"lr": metalab.uniform(0, 1)}, n_trials=6, seed=3)
    exp = metalab.Experiment(name="order_random", operation=op, params=space)
    metalab.run(exp, store=tmp_path / "s", progress=False)
    values = [float(r["lr"]) for r in _table_rows(tmp_path / "s")]
    assert values == sorted(values)


def test_a_manual_list_over_1000_configurations_is_listed_by_value(tmp_path):
    # docs/cli.md: manual lists of up to 1,000 configurations keep their order in the
    # manifest; a longer one is not described there, so its runs come by value.
    space = metalab.manual([{"x": i} for i in range(1000, -1, -1)])  # 1,001, descending
    exp = metalab.Experiment(name="order_long", operation=op, params=space)
    metalab.run(exp, store=tmp_path / "s", progress=False)
    values = [int(r["x"]) for r in _table_rows(tmp_path / "s")]
    assert values == list(range(1001))
    short = metalab.manual([{"x": i} for i in range(1000, 0, -1)])  # 1,000: plan order
    exp = metalab.Experiment(name="order_short", operation=op, params=short)
    metalab.run(exp, store=tmp_path / "t", progress=False)
    assert [int(r["x"]) for r in _table_rows(tmp_path / "t")] == list(range(1000, 0, -1))
