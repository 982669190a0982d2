"""Issue 13, items 5 and 6: stepped metrics are not scalars in disguise; analysis rough edges.

The runs mimic the validation-curve study of ``examples/validation_curve.py``: ``gamma``
on a logspace grid, per-fold scores as stepped metrics, their means as scalars.
"""

from __future__ import annotations

import re

import matplotlib
import numpy as np
import pandas as pd
import pytest

import metalab
from metalab.errors import ResultsError

matplotlib.use("Agg")
import matplotlib.pyplot as plt

GAMMAS = np.logspace(-6, -1, 6).tolist()  # holds 9.999999999999999e-06, not 1e-05
FOLDS = 4


def fold_scores(gamma: float, replicate: int) -> list[float]:
    """Known per-fold scores: fold 0 is the best, the last fold the worst."""
    base = 1.0 / (1.0 + abs(np.log10(gamma) + 3.0))
    return [base - 0.01 * fold + 0.001 * replicate for fold in range(FOLDS)]


@metalab.operation(name="curve_like", version="1")
def curve_like(params, seeds, capture):
    gamma = params["gamma"]
    if gamma == GAMMAS[-1] and seeds.spawn_key[0] == 1:
        raise RuntimeError("this fold diverged")
    scores = fold_scores(gamma, seeds.spawn_key[0])
    for fold, score in enumerate(scores):
        capture.metric("fold_cv_score", score, step=fold)
        capture.metric("fold_train_score", score + 0.05, step=fold)
    capture.metric("cv_score", float(np.mean(scores)))
    capture.metric("train_score", float(np.mean(scores)) + 0.05)
    if gamma < 1e-3:
        capture.metric("only_small", 1.0)  # missing in the other runs


@pytest.fixture
def study() -> metalab.Results:
    exp = metalab.Experiment(
        name="curve_like",
        operation=curve_like,
        params=metalab.grid(gamma=GAMMAS),
        seeds=metalab.seeds(base=0, replicates=2),
    )
    return metalab.run(exp)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------ item 5: reductions
def test_table_names_the_reduction_of_a_stepped_metric(study):
    text = study.table()
    header = text.splitlines()[0].split()
    assert "fold_cv_score[last]" in header and "fold_cv_score" not in header
    assert "cv_score" in header  # a scalar metric keeps its name
    df = study.table(as_dataframe=True)
    for _, row in df[df["status"] == "success"].iterrows():
        want = fold_scores(row["gamma"], row["replicate"])
        assert row["fold_cv_score[last]"] == pytest.approx(want[-1])
    best = study.table(as_dataframe=True, reduce="max")
    assert "fold_cv_score[max]" in best.columns and "fold_cv_score[last]" not in best.columns
    for _, row in best[best["status"] == "success"].iterrows():
        want = max(fold_scores(row["gamma"], row["replicate"]))
        assert row["fold_cv_score[max]"] == pytest.approx(want)
    assert "fold_cv_score" in study.to_pandas().columns  # the raw records keep the stored name


def test_summary_reduces_series_by_last_min_max_mean(study):
    last = study.summary(group_by="gamma", metrics=["fold_cv_score", "cv_score"])
    assert {"fold_cv_score[last]_mean", "cv_score_mean"} <= set(last.columns)
    assert "fold_cv_score_mean" not in last.columns
    for how, fn in [("min", min), ("max", max), ("mean", np.mean), ("last", lambda s: s[-1])]:
        got = study.summary(group_by="gamma", metrics="fold_cv_score", reduce=how)
        for _, row in got.iterrows():
            reps = [0] if row["gamma"] == GAMMAS[-1] else [0, 1]  # replicate 1 failed there
            want = np.mean([fn(fold_scores(row["gamma"], r)) for r in reps])
            assert row[f"fold_cv_score[{how}]_mean"] == pytest.approx(want), how
    both = study.summary(group_by="gamma", metrics=["fold_cv_score[min]", "fold_cv_score[max]"])
    assert (both["fold_cv_score[max]_mean"] > both["fold_cv_score[min]_mean"]).all()
    with pytest.raises(ResultsError, match=r"reduce='median' is not one of \['last', 'min'"):
        study.summary(group_by="gamma", reduce="median")


def test_display_and_plot_name_the_reduction(study, capsys):
    study.display(group_by="gamma", metrics=["fold_cv_score[max]"])
    out = capsys.readouterr().out
    assert "fold_cv_score[max]" in out  # printed as text, not eaten as rich markup
    ax = study.plot(x="gamma", y="fold_cv_score", reduce="min", logx=True)
    assert ax.get_ylabel().startswith("fold_cv_score[min]")


def test_metric_frame_carries_the_params_on_request(study):
    plain = study.metric_frame("fold_cv_score").compute()
    assert list(plain.columns) == ["run_id", "name", "step", "value", "time"]
    frame = study.metric_frame("fold_cv_score", params=True)
    assert list(frame.columns) == ["run_id", "gamma", "replicate", "name", "step", "value", "time"]
    df = frame.compute()
    # per-parameter, per-step analysis with no join: the mean score of each fold per gamma
    per_step = df.groupby(["gamma", "step"])["value"].mean()
    ok_reps = {g: [0] if g == GAMMAS[-1] else [0, 1] for g in GAMMAS}
    for (gamma, step), value in per_step.items():
        want = np.mean([fold_scores(gamma, r)[step] for r in ok_reps[gamma]])
        assert value == pytest.approx(want)


def test_metric_frame_params_named_like_its_columns_keep_their_prefix():
    @metalab.operation(name="clashing_steps", version="1")
    def op(params, capture):
        capture.metric("loss", params["step"], step=0)

    res = metalab.run(metalab.Experiment("clashing_steps", op, params=metalab.grid(step=[1, 2])))
    df = res.metric_frame(params=True).compute()
    assert list(df.columns) == [
        "run_id",
        "params.step",
        "replicate",
        "name",
        "step",
        "value",
        "time",
    ]
    assert sorted(df["params.step"].tolist()) == [1, 2] and df["step"].tolist() == [0, 0]


# ------------------------------------------------------------------ item 6: rough edges
def test_plot_takes_labels_and_several_metrics_with_a_legend(study):
    ax = study.plot(x="gamma", y=["train_score", "cv_score"], logx=True, band="std")
    assert [line.get_label() for line in ax.lines] == ["train_score", "cv_score"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train_score", "cv_score"]
    summary = study.summary(group_by="gamma", metrics=["cv_score"])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), summary["cv_score_mean"])

    ax = study.plot(x="gamma", y="cv_score", label="cross-validation", logx=True)
    ax = study.plot(x="gamma", y="train_score", label="training score", logx=True, ax=ax)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["cross-validation", "training score"]
    with pytest.raises(ResultsError, match="one name per metric"):
        study.plot(x="gamma", y=["train_score", "cv_score"], label="both")


def test_plot_legends_print_floats_short(study):
    ax = study.plot(x="replicate", y="cv_score", hue="gamma", band=None)
    labels = [line.get_label() for line in ax.lines]
    assert labels[1] == "gamma=1e-05" and labels[2] == "gamma=0.0001"
    assert all(len(label) <= len("gamma=1.78e-05") for label in labels)


def test_a_typo_in_x_blames_x(study):
    with pytest.raises(ResultsError, match=r"plot\(x='gama'\).*did you mean 'gamma'") as info:
        study.plot(x="gama", y="cv_score")
    assert "group_by" not in str(info.value)
    with pytest.raises(ResultsError, match=r"plot\(y='cv_scor'\).*did you mean 'cv_score'"):
        study.plot(x="gamma", y="cv_scor")
    with pytest.raises(ResultsError, match=r"plot\(hue='replicat'\)"):
        study.plot(x="gamma", y="cv_score", hue="replicat")


def test_missing_values_print_one_way(study, capsys):
    text = study.table()
    for spelling in ("None", "NaN", "<NA>", "nan", "NaT"):
        assert not re.search(rf"(^|\s){re.escape(spelling)}(\s|$)", text), spelling
    failed = [line for line in text.splitlines() if " failed " in line]
    assert failed and all(" - " in line for line in failed)
    study.display(group_by="gamma", metrics=["only_small"], stats=("mean", "min"))
    out = capsys.readouterr().out
    assert "nan" not in out.lower() and "None" not in out and " - " in out


def test_display_and_summary_say_failed_runs_were_left_out(study, capsys):
    summary = study.summary(group_by="gamma")
    assert summary.attrs["metalab"]["left_out"] == {"failed": 1}
    study.display(group_by="gamma", metrics=["cv_score"])
    assert "left out: 1 failed run" in capsys.readouterr().out
    study.successful.display(group_by="gamma", metrics=["cv_score"])
    assert "left out" not in capsys.readouterr().out


def test_runs_without_metrics_are_not_called_unsuccessful(capsys):
    @metalab.operation(name="quiet", version="1")
    def quiet(params):
        return None

    res = metalab.run(metalab.Experiment("quiet", quiet, params=metalab.grid(a=[1, 2])))
    res.display()
    out = capsys.readouterr().out
    assert "2 successful runs, but no metric to summarise" in out
    assert "no successful runs" not in out


def test_a_float_filter_matches_within_a_relative_tolerance(study):
    assert GAMMAS[1] != 1e-5
    hit = study.filter(gamma=1e-5)
    assert len(hit) == 2 and set(hit.to_pandas()["gamma"]) == {GAMMAS[1]}
    assert len(study.filter(gamma=[1e-5, 0.1])) == 4
    assert len(study.filter(gamma=1e-5 * (1 + 1e-6))) == 0  # a tolerance, not a rounding
    loaded = metalab.load_results("runs/curve_like")  # pushed down to the Parquet reader
    assert len(loaded.filter(gamma=1e-5)) == 2
    assert len(loaded.filter(gamma=1e-5).frame.compute()) == 2  # the lazy frame too
    assert len(loaded.filter(replicate=1.0)) == 6  # an integer column compares exactly


@metalab.operation(name="seeded", version="1")
def seeded(params, capture):
    capture.metric("acc", params["seed"] * 10)


def test_a_param_named_like_a_bookkeeping_column_is_reachable():
    exp = metalab.Experiment("seeded", seeded, params=metalab.grid(seed=[1, 2, 3]))
    res = metalab.run(exp)
    assert "params.seed" in res.to_pandas().columns  # the prefix stays (see test_results)
    with pytest.raises(ResultsError, match=r"filter\(seed=...\).*'params.seed'.*'record.seed'"):
        res.filter(seed=1)
    assert res.filter(**{"params.seed": 1}).to_pandas()["acc"].tolist() == [10]
    mine = int(res.to_pandas()["seed"].iloc[0])
    assert len(res.filter(**{"record.seed": mine})) == 3  # the record's own seed
    with pytest.raises(ResultsError, match="ambiguous"):
        res.summary(group_by="seed")
    with pytest.raises(ResultsError, match="ambiguous"):
        res.query("seed > 1")
    assert len(res.query("`params.seed` > 1 and status == 'seed'")) == 0  # a literal is no name
    assert res.summary(group_by="params.seed")["acc_mean"].tolist() == [10, 20, 30]
    assert len(res.successful) == 3 and len(res.failed) == 0


def test_frame_text_is_the_one_table_format():
    from metalab._text import MISSING, frame_text

    df = pd.DataFrame(
        {
            "a": [1.0, np.nan],
            "b": [None, "x"],
            "c": pd.array([1, None], dtype="Int64"),
            "d": [pd.Timestamp(0, tz="UTC"), pd.NaT],
        }
    )
    lines = frame_text(df).splitlines()
    assert lines[2].split() == [MISSING, "x", MISSING, MISSING]


def test_the_report_names_and_reduces_stepped_metrics(study, tmp_path):
    from metalab.report import build_report

    page = build_report("runs/curve_like")
    assert "fold_cv_score[last]" in page and "fold_cv_score[max]" not in page
    page = build_report("runs/curve_like", reduce="max")
    assert "fold_cv_score[max]" in page and "fold_cv_score[last]" not in page
    assert re.search(r"fold_cv_score\[max\][^<]*against gamma", page)
