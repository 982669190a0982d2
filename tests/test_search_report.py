"""The HTML report of a search store shows its history and parameter plots (issue 14)."""

from __future__ import annotations

import pytest

import metalab
from metalab.report import build_report

optuna = pytest.importorskip("optuna")
pytest.importorskip("matplotlib")


@metalab.operation(name="bowl", version="1")
def bowl(params, capture):
    capture.metric("loss", (params["x"] - 0.3) ** 2 + (params["kind"] == "b"))


def test_report_of_a_search_has_history_and_parameter_plots(tmp_path):
    space = {"x": metalab.uniform(-1, 1), "kind": metalab.choice(["a", "b"])}
    src = metalab.optimize(space, metric="loss", n_trials=8, seed=4)
    exp = metalab.Experiment(name="rep", version="1", operation=bowl, params=src)
    metalab.run(exp, store=tmp_path / "s")
    html = build_report(tmp_path / "s")
    assert '<a href="#search">Search</a>' in html
    assert "minimize loss over 8 trials (sampler tpe" in html
    assert 'aria-label="s0"' in html and "loss by trial, and the best so far" in html
    assert 'aria-label="s1"' in html and "loss against each searched parameter" in html
    history = html[html.index('aria-label="s0"') : html.index('aria-label="s1"')]
    assert ">best so far<" in history and ">trial<" in history  # legend and axis label


def test_report_of_a_grid_has_no_search_section(tmp_path):
    exp = metalab.Experiment(
        name="g", version="1", operation=bowl, params=metalab.grid(x=[0.0, 1.0], kind=["a"])
    )
    metalab.run(exp, store=tmp_path / "g")
    assert 'id="search"' not in build_report(tmp_path / "g")
