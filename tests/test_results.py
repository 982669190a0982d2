"""Results: tables, filters, queries, selection, summaries, exports and reprs on real stores."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import metalab
from metalab.errors import ResultsError


@metalab.operation(name="pi_mc", version="0.1")
def estimate_pi(params, seeds, capture):
    n = params["n_samples"]
    rng = seeds.numpy()
    x, y = rng.random(n), rng.random(n)
    capture.metric("pi_estimate", 4.0 * float((x**2 + y**2 <= 1).mean()))


def pi_experiment(replicates: int = 3) -> metalab.Experiment:
    return metalab.Experiment(
        name="pi_mc",
        version="0.1",
        context={},
        operation=estimate_pi,
        params=metalab.grid(n_samples=[1000, 10000, 100000]),
        seeds=metalab.seeds(base=42, replicates=replicates),
    )


@pytest.fixture
def pi_result():
    return metalab.run(pi_experiment())


@metalab.operation(name="flaky")
def flaky(params, capture):
    if params["x"] >= 3 and Path("fail.flag").exists():
        raise RuntimeError("flag set")
    capture.metric("y", params["x"] * 2.0)


def flaky_experiment() -> metalab.Experiment:
    return metalab.Experiment(
        name="flaky",
        version="1",
        context={},
        operation=flaky,
        params=metalab.grid(x=list(range(6))),
        seeds=metalab.seeds(base=1, replicates=2),
    )


# ------------------------------------------------------------------------------- tables
def test_run_results_come_in_plan_order(pi_result):
    df = pi_result.table(as_dataframe=True)
    plan = pi_experiment().plan()
    assert df["run_id"].tolist() == plan["run_id"].tolist()
    assert list(df.columns[:5]) == ["run_id", "n_samples", "replicate", "seed", "status"]
    assert "pi_estimate" in df.columns and "params" not in df.columns
    assert df["n_samples"].tolist() == [1000] * 3 + [10000] * 3 + [100000] * 3


def test_load_results_ordered_by_start_time(pi_result):
    loaded = metalab.load_results("runs/pi_mc").to_pandas()
    assert loaded["started_at"].is_monotonic_increasing
    assert sorted(loaded["run_id"]) == sorted(pi_result.to_pandas()["run_id"])


def test_table_text_is_printable(pi_result):
    text = pi_result.table()
    assert isinstance(text, str)
    lines = text.splitlines()
    assert len(lines) == 10 and "n_samples" in lines[0] and "pi_estimate" in lines[0]
    assert lines[1].split()[0] == pi_result[0].run_id[:8]
    short = pi_result.table(max_rows=4)
    assert "... 5 more runs ..." in short and len(short.splitlines()) == 6


def test_full_table_and_runs(pi_result):
    full = pi_result.to_pandas(full=True)
    assert {"params", "traceback", "host", "sweep"} <= set(full.columns)
    run = pi_result[4]
    assert run.params == {"n_samples": 10000} and run.replicate == 1
    assert run.metrics["pi_estimate"] == pytest.approx(full["pi_estimate"][4])
    assert pi_result[run.run_id[:10]].run_id == run.run_id
    assert [r.run_id for r in pi_result] == full["run_id"].tolist()
    with pytest.raises(ResultsError, match="no run with id"):
        pi_result["zzzz"]


# ------------------------------------------------------------------------------ selection
def test_filter_equals_list_and_chaining(pi_result):
    one = pi_result.filter(n_samples=1000)
    assert isinstance(one, metalab.Results) and len(one) == 3
    two = pi_result.filter(n_samples=[1000, 100000])
    assert sorted(set(two.to_pandas()["n_samples"])) == [1000, 100000]
    chained = two.filter(replicate=0).select("n_samples", "pi_estimate")
    df = chained.to_pandas()
    assert list(df.columns) == ["n_samples", "pi_estimate"] and len(df) == 2
    assert len(pi_result.filter(n_samples=5)) == 0


def test_filter_fresh_and_loaded_agree(pi_result):
    fresh = metalab.load_results("runs/pi_mc")
    loaded = metalab.load_results("runs/pi_mc")
    loaded.to_pandas()  # derived results now filter this table in memory
    for res in (fresh, loaded):
        got = res.filter(n_samples=[10000], status="success").query("replicate >= 1")
        assert sorted(got.to_pandas()["replicate"]) == [1, 2]


def test_query_pandas_syntax(pi_result):
    limit = 5000  # noqa: F841 (used by the query as @limit)
    got = pi_result.query("n_samples > @limit and status == 'success'").to_pandas()
    assert sorted(set(got["n_samples"])) == [10000, 100000] and len(got) == 6
    got = pi_result.query("n_samples in [1000, 100000] or replicate == 2").to_pandas()
    assert len(got) == 7
    with pytest.raises(ResultsError, match="n_sample"):
        pi_result.query("n_sample > 3").to_pandas()
    with pytest.raises(ResultsError, match="not a condition"):
        pi_result.query("n_samples + 1").to_pandas()


def test_unknown_names_suggest_fix(pi_result):
    with pytest.raises(ResultsError, match="did you mean 'n_samples'"):
        pi_result.filter(n_sample=1000)
    with pytest.raises(KeyError):
        pi_result.select("pi_estimat")
    with pytest.raises(ResultsError, match="unknown status 'succes'"):
        pi_result.filter(status="succes")


def test_status_filters_stay_correct_after_reruns():
    Path("fail.flag").touch()
    first = metalab.run(flaky_experiment())
    assert first.counts()["failed"] == 6 and len(first.failed) == 6
    Path("fail.flag").unlink()
    metalab.run(flaky_experiment())  # retries the failed runs: attempt 2 succeeds
    res = metalab.load_results("runs/flaky")
    assert len(res) == 12
    assert len(res.filter(status="failed")) == 0
    assert len(res.query("status == 'failed'")) == 0
    ok = res.filter(status="success").to_pandas()
    assert len(ok) == 12 and set(ok.loc[ok["x"] >= 3, "attempt"]) == {2}
    frame = res.filter(status="failed").frame.compute()
    assert len(frame) == 0
    assert len(res.frame.compute()) == 12


@metalab.operation(name="phases")
def phases(params, capture):
    first = Path("fail.flag").exists()  # first sweep: phase 1, and runs x >= 3 fail
    capture.metric("phase", 1 if first else 2)
    if first and params["x"] >= 3:
        raise RuntimeError("flag set")


def test_metric_filters_see_the_latest_attempt_of_a_rerun_run():
    """A filter on a metric is pushed down as "condition or attempt > 1" (docs/design.md).

    The failed first attempts (phase 1) sit in the first sweep's Parquet file, their
    successful second attempts (phase 2) in the second's.  Pushing down "phase == 1"
    alone would skip the second file's row groups by their statistics and show the stale
    first attempts as current.
    """
    exp = metalab.Experiment(
        name="phases",
        version="1",
        context={},
        operation=phases,
        params=metalab.grid(x=list(range(6))),
        seeds=metalab.seeds(base=1, replicates=2),
    )
    Path("fail.flag").touch()
    metalab.run(exp)
    Path("fail.flag").unlink()
    metalab.run(exp)  # re-runs the failed runs: attempt 2 succeeds with phase 2
    res = metalab.load_results("runs/phases")
    assert len(res) == 12 and len(list(Path("runs/phases/records").glob("*.parquet"))) == 2
    want = {0, 1, 2}
    assert set(res.filter(phase=1).to_pandas()["x"]) == want
    assert len(res.filter(phase=1)) == 6 and len(res.filter(phase=[1])) == 6
    assert set(res.query("phase == 1").to_pandas()["x"]) == want
    assert set(res.query("phase < 2").to_pandas()["x"]) == want
    assert set(res.filter(phase=1).frame.compute()["x"]) == want
    late = res.filter(phase=2).to_pandas()
    assert set(late["x"]) == {3, 4, 5} and set(late["attempt"]) == {2}


@metalab.operation(name="clash")
def clash(params, capture):
    capture.metric("x", params["x"] * 10)  # same name as the param
    capture.metric("status", 7)  # named like a core column
    capture.metric("host", 0.5)  # named like a bookkeeping column


def test_colliding_names_keep_their_prefix():
    """``user_names``: a metric named like a param or a core column keeps ``metrics.``."""
    exp = metalab.Experiment(
        name="clash",
        version="1",
        context={},
        operation=clash,
        params=metalab.grid(x=[1, 2]),
        seeds=metalab.seeds(base=0, replicates=1),
    )
    res = metalab.run(exp)
    df = res.to_pandas()
    assert df.columns.is_unique
    assert df["x"].tolist() == [1, 2] and df["metrics.x"].tolist() == [10, 20]
    assert df["status"].tolist() == ["success"] * 2
    assert df["metrics.status"].tolist() == [7, 7]
    assert df["host"].tolist() == [0.5, 0.5]  # the bookkeeping column gives way
    assert res.param_names() == ["x"]
    assert res.metric_names() == ["metrics.x", "metrics.status", "host"]
    full = res.to_pandas(full=True)
    assert full.columns.is_unique and "record.host" in full.columns
    assert len(res.filter(x=2)) == 1 and len(res.filter(**{"metrics.x": 10})) == 1
    assert res.query("`metrics.x` > 15").to_pandas()["x"].tolist() == [2]
    summary = res.summary(group_by="x", metrics=["metrics.x"], stats=("mean",))
    assert summary["metrics.x_mean"].tolist() == [10.0, 20.0]


# -------------------------------------------------------------------------- summaries
def test_summary_statistics_match_numpy(pi_result):
    df = pi_result.to_pandas()
    summary = pi_result.summary(
        group_by="n_samples", stats=("mean", "std", "count", "ci95", "sem", "min", "max", "median")
    )
    assert summary["n_samples"].tolist() == [1000, 10000, 100000]
    for _, row in summary.iterrows():
        vals = df.loc[df["n_samples"] == row["n_samples"], "pi_estimate"].to_numpy()
        assert row["pi_estimate_mean"] == pytest.approx(vals.mean())
        assert row["pi_estimate_std"] == pytest.approx(vals.std(ddof=1))
        assert row["pi_estimate_count"] == 3
        assert row["pi_estimate_ci95"] == pytest.approx(4.303 * vals.std(ddof=1) / math.sqrt(3))
        assert row["pi_estimate_sem"] == pytest.approx(vals.std(ddof=1) / math.sqrt(3))
        assert row["pi_estimate_median"] == pytest.approx(np.median(vals))
    everything = pi_result.summary(group_by=[])
    assert everything["pi_estimate_count"].tolist() == [9]


def test_summary_ignores_failed_runs_and_checks_stats():
    Path("fail.flag").touch()
    res = metalab.run(flaky_experiment())
    s = res.summary(group_by="x")
    assert s["y_count"].tolist() == [2, 2, 2]
    with pytest.raises(ResultsError, match="unknown stats"):
        res.summary(stats=("mean", "p99"))
    with pytest.raises(ResultsError, match="group_by"):
        res.summary(group_by="z")


def test_t975_matches_reference_values():
    from metalab.results.analysis import t975

    got = t975([1, 2, 9, 30, 40, 120, 1000])
    want = [12.706, 4.303, 2.262, 2.042, 2.0211, 1.9799, 1.9623]
    assert got == pytest.approx(want, abs=2e-4)


def test_display_is_readable(pi_result, capsys):
    pi_result.display(group_by=["n_samples"])
    out = capsys.readouterr().out
    summary = pi_result.summary(group_by="n_samples")
    row = summary.iloc[2]
    from metalab.results.analysis import fmt_pm

    cell = fmt_pm(row["pi_estimate_mean"], row["pi_estimate_std"]) + " (3)"
    assert cell in out and "mean ± std (n)" in out and "n_samples" in out
    assert "…" not in out  # nothing truncated
    pi_result.display(group_by="n_samples", stats=("mean", "ci95"))
    out = capsys.readouterr().out
    assert "mean ± ci95" in out and "(3)" not in out


def test_display_splits_wide_tables(capsys):
    @metalab.operation(name="wide")
    def wide(params, capture):
        capture.metrics({f"a_rather_long_metric_name_{i}": params["k"] + i for i in range(6)})

    exp = metalab.Experiment(
        name="wide",
        version="1",
        context={},
        operation=wide,
        params=metalab.grid(k=[1, 2]),
        seeds=metalab.seeds(base=0, replicates=2),
    )
    metalab.run(exp).display(group_by="k")
    out = capsys.readouterr().out
    assert out.count("┏") == 6  # one table per metric
    for i in range(6):
        assert f"a_rather_long_metric_name_{i}" in out
    assert "…" not in out


# ------------------------------------------------------------------------------ exports
def test_exports_round_trip(pi_result, tmp_path):
    pi_result.to_csv(tmp_path / "r.csv")
    pi_result.to_parquet(tmp_path / "r.parquet")
    df = pi_result.to_pandas()
    csv = pd.read_csv(tmp_path / "r.csv")
    assert csv["run_id"].tolist() == df["run_id"].tolist()
    assert csv["pi_estimate"].to_numpy() == pytest.approx(df["pi_estimate"].to_numpy())
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.column_names == list(df.columns)
    assert table.column("n_samples").to_pylist() == df["n_samples"].tolist()
    pi_result.select("n_samples", "pi_estimate").to_csv(tmp_path / "s.csv")
    assert list(pd.read_csv(tmp_path / "s.csv").columns) == ["n_samples", "pi_estimate"]


def test_load_results_of_several_stores_side_by_side():
    metalab.run(pi_experiment(replicates=2), store="runs/v1")
    metalab.run(pi_experiment(replicates=3), store="runs/v2")
    both = metalab.load_results(["runs/v1", "runs/v2"])
    df = both.to_pandas()
    assert df.columns[0] == "experiment"
    assert df["experiment"].value_counts().to_dict() == {"v1": 6, "v2": 9}
    s = both.summary(group_by=["experiment", "n_samples"])
    assert s["pi_estimate_count"].tolist() == [2, 2, 2, 3, 3, 3]
    assert len(both.filter(experiment="v2")) == 9
    frame = both.frame.compute()
    assert sorted(frame["experiment"].value_counts().tolist()) == [6, 9]
    # the same runs live in both stores (identical run ids): neither hides the other
    assert both.to_pandas()["run_id"].nunique() == 9


# -------------------------------------------------------------------------------- reprs
def test_reprs_count_success_failed_pending(pi_result):
    assert repr(pi_result) == "<Results pi_mc: 9 runs (9 succeeded, 0 failed, 0 pending)>"
    html = pi_result._repr_html_()
    assert "9 succeeded" in html and "<table" in html and pi_result[0].run_id[:8] in html
    run_html = pi_result[0]._repr_html_()
    assert "n_samples" in run_html and "pi_estimate" in run_html and "success" in run_html


def test_failed_runs_in_reprs_and_html():
    Path("fail.flag").touch()
    res = metalab.run(flaky_experiment())
    assert "6 succeeded, 6 failed, 0 pending" in repr(res)
    bad = res.failed[0]
    assert "RuntimeError" in bad._repr_html_() and "flag set" in bad._repr_html_()
