"""Runs of different definitions (versions, context) in one store are never pooled.

The case of issue 13: ``pi_mc`` at operation version 0.1 (pi ~ 3.14), then a changed
operation at 0.2 (~ 1.57) into the same store.  Before, ``summary`` showed 6 runs per
group with a mean of ~2.35, which is neither answer.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pyarrow.dataset as ds
import pytest

import metalab
from metalab.cli import main
from metalab.report import build_report

DEF_COLUMNS = ["experiment_version", "operation_version", "context_fingerprint"]


def _pi_mc(version: str, factor: float, *, exp_version: str = "1", context=None):
    @metalab.operation(name="pi_mc", version=version)
    def pi_mc(params, seeds, capture):
        rng = seeds.numpy()
        n = params["n_samples"]
        x, y = rng.random(n), rng.random(n)
        capture.metric("pi_estimate", factor * 4 * float((x * x + y * y <= 1).mean()))

    return metalab.Experiment(
        name="pi_mc",
        version=exp_version,
        operation=pi_mc,
        params=metalab.grid(n_samples=[2000, 4000]),
        seeds=metalab.seeds(base=7, replicates=3),
        context=context,
    )


@pytest.fixture
def two_versions(tmp_path: Path) -> Path:
    store = tmp_path / "pi"
    first = metalab.run(_pi_mc("0.1", 1.0), store=store)
    assert len(first) == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # run() returns its own definition: nothing to warn
        second = metalab.run(_pi_mc("0.2", 0.5), store=store)
    assert len(second) == 6
    assert set(second.to_pandas()["operation_version"]) == {"0.2"}
    return store


def _load_current(store: Path) -> tuple[metalab.Results, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = metalab.load_results(store)
        len(res), res.summary("n_samples")  # reading does not warn again
    return res, [w for w in caught if issubclass(w.category, metalab.MetalabWarning)]


def test_records_carry_their_definition(two_versions: Path) -> None:
    table = ds.dataset(two_versions / "records").to_table(columns=[*DEF_COLUMNS, "run_id"])
    rows = {tuple(r[c] for c in DEF_COLUMNS) for r in table.to_pylist()}
    assert len(rows) == 2
    assert {r[1] for r in rows} == {"0.1", "0.2"}
    assert all(r[0] == "1" and len(r[2]) == 64 for r in rows)


def test_load_results_shows_the_current_definition_and_warns_once(two_versions: Path) -> None:
    res, caught = _load_current(two_versions)
    assert len(caught) == 1
    w = caught[0]
    assert w.category is metalab.OtherDefinitionsWarning
    text = str(w.message)
    assert "6 runs of 1 other definition" in text and "definitions='all'" in text
    assert Path(w.filename).name == Path(__file__).name  # points at the caller
    df = res.to_pandas()
    assert len(df) == 6 and set(df["operation_version"]) == {"0.2"}
    summary = res.summary("n_samples")
    assert summary["pi_estimate_count"].tolist() == [3, 3]
    assert summary["pi_estimate_mean"].between(1.4, 1.75).all()
    assert len(res.frame.compute()) == 6  # the lazy frame has the same scope
    assert set(res.frame.compute()["operation_version"]) == {"0.2"}


def test_all_definitions_with_their_columns_never_pooled(two_versions: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        every = metalab.load_results(two_versions, definitions="all")
        df = every.to_pandas()
    assert len(df) == 12
    assert set(DEF_COLUMNS) <= set(df.columns)
    assert set(DEF_COLUMNS) <= set(every.frame.columns)
    assert set(every.frame.compute()["operation_version"]) == {"0.1", "0.2"}
    summary = every.summary("n_samples")
    assert list(summary.columns[:2]) == ["operation_version", "n_samples"]
    assert summary["pi_estimate_count"].tolist() == [3, 3, 3, 3]
    means = dict(zip(summary["operation_version"], summary["pi_estimate_mean"], strict=False))
    assert 2.9 < means["0.1"] < 3.4 and 1.4 < means["0.2"] < 1.75
    # Never the pooled mean of both definitions (~2.35), whatever the grouping.
    pooled = every.summary([])
    assert sorted(pooled["pi_estimate_count"].tolist()) == [6, 6]
    assert not pooled["pi_estimate_mean"].between(2.0, 2.7).any()
    assert "operation_version" in every.table()  # the printed table tells them apart


def test_plot_refuses_to_pool_and_draws_one_line_per_definition(two_versions: Path) -> None:
    pytest.importorskip("matplotlib")
    every = metalab.load_results(two_versions, definitions="all")
    with pytest.raises(metalab.ResultsError, match="hue='operation_version'"):
        every.plot("n_samples", "pi_estimate")
    ax = every.plot("n_samples", "pi_estimate", hue="operation_version")
    assert len(ax.get_lines()) >= 2
    one = every.filter(operation_version="0.1")
    assert len(one.plot("n_samples", "pi_estimate").get_lines()) >= 1


def test_cli_table_and_report(two_versions: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["table", str(two_versions), "--group-by", "n_samples"]) == 0
    out, err = capsys.readouterr()
    assert "note:" in err and "6 runs of 1 other definition" in err and "--definitions all" in err
    assert "operation_version" not in out
    assert [ln.split()[-1] for ln in out.strip().splitlines()[1:]] == ["3", "3"]
    assert (
        main(["table", str(two_versions), "--group-by", "n_samples", "--definitions", "all"]) == 0
    )
    out, err = capsys.readouterr()
    assert "note:" not in err
    lines = out.strip().splitlines()
    assert lines[0].split()[:2] == ["operation_version", "n_samples"]
    assert [ln.split()[-1] for ln in lines[1:]] == ["3"] * 4

    pytest.importorskip("matplotlib")
    page = build_report(two_versions)
    assert "6 runs of 1 other definition are left out" in page
    assert "metalab report --definitions all" in page
    every = build_report(two_versions, definitions="all")
    assert "operation_version" in every and "left out" not in every
    assert main(["report", str(two_versions), "-o", "r.html", "--definitions", "all"]) == 0
    assert "operation_version" in Path("r.html").read_text()


def test_experiment_version_and_context_are_definitions_too(tmp_path: Path) -> None:
    store = tmp_path / "s"
    metalab.run(_pi_mc("0.1", 1.0, exp_version="1", context={"scale": 1}), store=store)
    metalab.run(_pi_mc("0.1", 1.0, exp_version="2", context={"scale": 1}), store=store)
    metalab.run(_pi_mc("0.1", 1.0, exp_version="2", context={"scale": 2}), store=store)
    with pytest.warns(metalab.OtherDefinitionsWarning, match="12 runs of 2 other definitions"):
        res = metalab.load_results(store)
    assert len(res) == 6
    every = metalab.load_results(store, definitions="all")
    summary = every.summary("n_samples")
    assert {"experiment_version", "context_fingerprint"} <= set(summary.columns)
    assert "operation_version" not in summary.columns  # the same everywhere
    assert summary["pi_estimate_count"].tolist() == [3] * 6


def test_definitions_option_is_checked(two_versions: Path) -> None:
    with pytest.raises(metalab.ResultsError, match=r"'current'.*'all'"):
        metalab.load_results(two_versions, definitions="latest")


def test_single_definition_reads_without_warning(tmp_path: Path) -> None:
    store = tmp_path / "one"
    metalab.run(_pi_mc("0.1", 1.0), store=store)
    metalab.run(_pi_mc("0.1", 1.0), store=store, resume=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = metalab.load_results(store)
        assert len(res) == 6 and res.summary("n_samples")["pi_estimate_count"].tolist() == [3, 3]


def test_records_rebuilt_from_a_journal_keep_their_definition(tmp_path: Path) -> None:
    from metalab.store.journal import Journal, JournalWriter

    cols = {"run_id": ["a" * 32], "params": ['{"x":1}'], "replicate": [0], "seed": [1],
            "attempt": [1]}  # fmt: skip
    definition = dict(zip(DEF_COLUMNS, ["3", "0.7", "f" * 64], strict=True))
    w = JournalWriter(tmp_path, sweep="s1", part=0, columns=cols, worker="w", definition=definition)
    w.append(["a" * 32, "success", 1, 2, {"y": 1.0}, None])
    w.close()
    table, _steps = Journal(w.path).tables()
    assert table is not None
    assert {c: table.column(c)[0].as_py() for c in DEF_COLUMNS} == definition
