"""Plots: the drawn line data equals the group means; bands, log axes, files, learning curves."""

from __future__ import annotations

import sys

import matplotlib
import numpy as np
import pytest

import metalab
from metalab.errors import ResultsError

matplotlib.use("Agg")
import matplotlib.pyplot as plt


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@metalab.operation(name="curve")
def train(params, seeds, capture):
    rng = seeds.numpy()
    lr, width = params["lr"], params["width"]
    loss = 1.0
    for step in range(8):
        loss *= 1 - lr * (0.5 + rng.random())
        capture.metric("loss", loss, step=step)
    capture.metric("final_loss", loss)
    capture.metric("score", width * lr + rng.normal(0, 0.01))


@pytest.fixture
def result():
    exp = metalab.Experiment(
        name="curve",
        version="1",
        context={},
        operation=train,
        params=metalab.grid(lr=[0.05, 0.1, 0.2], width=[16, 64]),
        seeds=metalab.seeds(base=7, replicates=4),
    )
    return metalab.run(exp)


def test_plot_lines_are_group_means_with_ci_band(result, tmp_path):
    ax = result.plot(x="lr", y="score", hue="width", logx=True, path=tmp_path / "p.png")
    summary = result.summary(group_by=["width", "lr"], metrics=["score"], stats=("mean", "ci95"))
    assert len(ax.lines) == 2
    for line, width in zip(ax.lines, [16, 64], strict=True):
        rows = summary[summary["width"] == width].sort_values("lr")
        np.testing.assert_allclose(line.get_xdata(), rows["lr"].to_numpy())
        np.testing.assert_allclose(line.get_ydata(), rows["score_mean"].to_numpy())
        assert line.get_label() == f"width={width}"
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    rows = summary[summary["width"] == 16]
    lo = (rows["score_mean"] - rows["score_ci95"]).min()
    hi = (rows["score_mean"] + rows["score_ci95"]).max()
    assert band.min() == pytest.approx(lo) and band.max() == pytest.approx(hi)
    assert ax.get_xscale() == "log" and "95% CI" in ax.get_ylabel()
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_plot_errorbars_std_and_no_band(result):
    ax = result.plot(x="lr", y="final_loss", band="std", errorbars=True, logy=True)
    s = result.summary(group_by="lr", metrics=["final_loss"])
    assert len(ax.lines) == 1
    np.testing.assert_allclose(ax.lines[0].get_ydata(), s["final_loss_mean"].to_numpy())
    segs = ax.collections[0].get_segments()  # one vertical bar per point: mean ± std
    np.testing.assert_allclose(
        [seg[1][1] - seg[0][1] for seg in segs], 2 * s["final_loss_std"].to_numpy()
    )
    assert ax.get_yscale() == "log"
    bare = result.plot(x="width", y="score", band=None)
    assert len(bare.collections) == 0
    with pytest.raises(ResultsError, match="band="):
        result.plot(x="lr", y="score", band="iqr")


def test_plot_series_learning_curves(result, tmp_path):
    ax = result.plot_series("loss", hue="lr", path=tmp_path / "curves.png")
    series = result.series("loss")
    assert len(series) == 6 * 4 * 8 and set(series.columns) >= {"lr", "width", "step", "value"}
    assert len(ax.lines) == 3
    for line, lr in zip(ax.lines, [0.05, 0.1, 0.2], strict=True):
        want = series[series["lr"] == lr].groupby("step")["value"].mean()
        np.testing.assert_allclose(line.get_xdata(), want.index.to_numpy())
        np.testing.assert_allclose(line.get_ydata(), want.to_numpy())
    assert (tmp_path / "curves.png").exists()
    # the last step of each run's curve is its final loss
    last = series[series["step"] == 7].set_index("run_id")["value"]
    final = result.to_pandas().set_index("run_id")["final_loss"]
    np.testing.assert_allclose(last.sort_index(), final.sort_index())
    one = result.filter(lr=0.1, width=16).plot_series("loss", band=None)
    want = series[(series["lr"] == 0.1) & (series["width"] == 16)].groupby("step")["value"]
    np.testing.assert_allclose(one.lines[0].get_ydata(), want.mean().to_numpy())
    with pytest.raises(ResultsError, match="did you mean 'loss'"):
        result.plot_series("los")


def test_missing_matplotlib_names_the_extra(result, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "metalab\[plot\]"'):
        result.plot(x="lr", y="score")
