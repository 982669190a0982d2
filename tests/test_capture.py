"""The capture object: safe names, metric types, NaN/inf, steps, logs and captured output."""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import metalab
from metalab import Capture, CaptureError, ThreadExecutor
from metalab.capture import check_name

UNSAFE = {
    "": "empty",
    "a/b": "path separator",
    "a\\b": "path separator",
    "..": "'..'",
    "../../escape": "path separator",
    "..escape": "'..'",
    "/abs/path": "path separator",
    "C:\\Windows": "path separator",
    "C:evil": "':'",
    "tab\there": "control",
    "new\nline": "control",
    "nul\x00byte": "control",
    "bell\x07": "control",
    "rtl\u202eoverride": "invisible",
    " padded": "whitespace",
    ".hidden": "starts with '.'",
    ".tmp-1-x": "starts with '.'",
    "x" * 201: "longer than 200 bytes",
    "é" * 101: "longer than 200 bytes",
    "e\u0301": "NFC",
    "CON": "Windows",
    "nul.txt": "Windows",
}
SAFE = ["loss", "val.acc", "précision", "损失", "ошибка", "α-β_γ", "emoji_🚀", "a b", "x" * 200]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --- names -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(UNSAFE))
def test_check_name_refuses_unsafe_names_naming_the_rule(name):
    with pytest.raises(CaptureError, match="unsafe") as info:
        check_name(name, "artifact name")
    assert isinstance(info.value, ValueError)
    assert UNSAFE[name] in str(info.value)


@pytest.mark.parametrize("name", SAFE)
def test_check_name_accepts_safe_unicode(name):
    assert check_name(name) == name


@pytest.mark.parametrize("bad", [None, 3, b"bytes", ["list"]])
def test_check_name_refuses_non_strings(bad):
    with pytest.raises(CaptureError, match="must be a string"):
        check_name(bad, "metric name")


@pytest.mark.parametrize("name", list(UNSAFE))
def test_direct_capture_refuses_unsafe_names_and_writes_nothing(tmp_path, name):
    store = tmp_path / "store"
    store.mkdir()
    outside_before = _files(tmp_path)
    cap = Capture("r" * 32, str(store))
    calls = [
        lambda: cap.artifact(name, np.arange(3)),
        lambda: cap.artifact(name, {"a": 1}),
        lambda: cap.figure(name, _figure()),
        lambda: cap.metric(name, 1.0),
        lambda: cap.metric(name, 1.0, step=0),
        lambda: cap.metrics({name: 1.0}),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="unsafe"):
            call()
    assert _files(tmp_path) == outside_before
    assert cap.scalars == {} and cap.manifest == []  # steps: see the rejected-calls test


@pytest.mark.parametrize("name", SAFE)
def test_direct_capture_writes_safe_unicode_names_inside_the_store(tmp_path, name):
    store = tmp_path / "store"
    cap = Capture("r" * 32, str(store))
    cap.artifact(name, [1, 2])
    (entry,) = cap.manifest
    path = store / entry["path"]
    assert path.is_file() and path.parent == store / "artifacts" / ("r" * 32)
    assert path.name == f"{name}.json"
    assert {p for p in tmp_path.rglob("*") if p.is_file()} == {path}


def test_capture_without_store_cannot_save_artifacts():
    cap = Capture("r1", None)
    cap.metric("m", 1)
    with pytest.raises(CaptureError, match="not attached to a store"):
        cap.artifact("a", [1])


def test_capture_refuses_an_unsafe_run_id(tmp_path):
    with pytest.raises(CaptureError, match="run id"):
        Capture("../../x", str(tmp_path)).artifact("a", [1])
    assert not (tmp_path.parent / "x").exists()


# --- metrics -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected", "typ"),
    [
        (1, 1, int),
        (2.5, 2.5, float),
        (True, True, bool),
        (False, False, bool),
        (np.int8(3), 3, int),
        (np.int64(-4), -4, int),
        (np.uint32(5), 5, int),
        (np.float16(0.5), 0.5, float),
        (np.float32(0.25), 0.25, float),
        (np.float64(1e300), 1e300, float),
        (np.bool_(True), True, bool),
        (np.array(7.0), 7.0, float),
    ],
)
def test_metric_accepts_python_and_numpy_numbers(value, expected, typ):
    cap = Capture("r1", None)
    cap.metric("m", value)
    assert cap.scalars["m"] == expected and type(cap.scalars["m"]) is typ


def test_metric_keeps_nan_and_infinities():
    cap = Capture("r1", None)
    cap.metrics(
        {"nan": float("nan"), "inf": math.inf, "ninf": -math.inf, "npnan": np.float32("nan")}
    )
    assert math.isnan(cap.scalars["nan"]) and math.isnan(cap.scalars["npnan"])
    assert cap.scalars["inf"] == math.inf and cap.scalars["ninf"] == -math.inf


@pytest.mark.parametrize(
    "value",
    [
        "0.5",
        None,
        [1.0],
        (1,),
        {"a": 1},
        1 + 2j,
        np.complex128(1),
        Decimal("1.5"),
        Fraction(1, 2),
        np.array([1.0, 2.0]),
        np.str_("x"),
        np.datetime64("2020-01-01"),
        object(),
    ],
)
def test_metric_refuses_other_types_with_a_type_error(value):
    cap = Capture("r1", None)
    with pytest.raises(TypeError, match=r"must be a number .*capture\.artifact"):
        cap.metric("m", value)
    with pytest.raises(TypeError):
        cap.metric("m", value, step=0)
    assert cap.scalars == {}


@pytest.mark.parametrize("step", [1.0, "1", True, np.float64(1.0)])
def test_metric_step_must_be_an_int(step):
    cap = Capture("r1", None)
    with pytest.raises(TypeError, match="step must be an int"):
        cap.metric("m", 1.0, step=step)


@metalab.operation(name="rejects", version="1")
def rejects(params, capture):
    """Makes calls that must be refused, then records one plain and one stepped metric."""
    bad_calls = [
        lambda: capture.metric("m", "text"),
        lambda: capture.metric("m", object(), step=0),
        lambda: capture.metric("m", 1.0, step=1.0),
        lambda: capture.metric("a/b", 1.0, step=0),
        lambda: capture.metrics({"..": 1.0}, step=0),
        lambda: capture.log("x", level="loud"),
    ]
    for call in bad_calls:
        try:
            call()
        except (TypeError, ValueError):
            continue
        raise AssertionError("a bad capture call was accepted")
    capture.metric("plain", 1.0, step=None)  # None means a plain scalar
    for step, v in enumerate([0.9, 0.5, 0.7]):
        capture.metric("loss", v, step=np.int64(step))


def test_refused_calls_record_nothing_and_the_last_step_is_the_scalar():
    (run,) = metalab.run(metalab.Experiment("rejects", rejects))
    assert run.status == "success", run.error
    assert run.metrics == {"plain": 1.0, "loss": 0.7}  # a stepped metric's last value
    assert run.metric_series("plain").empty
    assert list(run.metric_series("loss").items()) == [(0, 0.9), (1, 0.5), (2, 0.7)]
    assert run.logs == ""
    with pytest.raises(metalab.ResultsError, match="no metric 'm'"):
        run.metric_series("m")


def test_metrics_needs_a_mapping():
    with pytest.raises(TypeError, match="takes a dict"):
        Capture("r1", None).metrics([("a", 1)])


# --- artifacts (direct) -----------------------------------------------------------------------
def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    return fig


def test_artifact_manifest_entries_match_the_files(tmp_path):
    import hashlib

    cap = Capture("a" * 32, str(tmp_path))
    cap.artifact("arr", np.arange(4))
    cap.figure("fig", _figure(), formats=("png", "svg", "pdf"))
    assert [(a["name"], a["format"]) for a in cap.manifest] == [
        ("arr", "npy"),
        ("fig", "png"),
        ("fig", "svg"),
        ("fig", "pdf"),
    ]
    for a in cap.manifest:
        path = tmp_path / a["path"]
        assert not Path(a["path"]).is_absolute()
        assert a["path"].startswith(f"artifacts/{'a' * 32}/")
        assert a["size"] == path.stat().st_size
        assert a["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not [p for p in (tmp_path / "artifacts").rglob(".tmp-*")]


def test_saving_a_name_again_replaces_it(tmp_path):
    cap = Capture("a" * 32, str(tmp_path))
    cap.artifact("x", np.arange(3))
    cap.artifact("x", {"now": "json"})
    assert [(a["name"], a["format"]) for a in cap.manifest] == [("x", "json")]
    assert sorted(p.name for p in (tmp_path / "artifacts" / ("a" * 32)).iterdir()) == ["x.json"]


def test_figure_checks_its_arguments(tmp_path):
    cap = Capture("a" * 32, str(tmp_path))
    with pytest.raises(metalab.UnsupportedArtifactError, match="matplotlib Figure"):
        cap.figure("f", [1, 2])
    with pytest.raises(CaptureError, match="png, svg, pdf"):
        cap.figure("f", _figure(), formats=("png", "jpg"))
    with pytest.raises(CaptureError, match="empty"):
        cap.figure("f", _figure(), formats=())
    assert cap.manifest == []


# --- logs ---------------------------------------------------------------------------------------
@metalab.operation(name="levels", version="1")
def levels(params, capture):
    for level in ("debug", "info", "WARNING", "error", "critical"):
        capture.log(f"m-{level}", level=level)


def test_log_levels():
    (run,) = metalab.run(metalab.Experiment("levels", levels))
    assert [line.split()[1:] for line in run.logs.splitlines()] == [
        ["DEBUG", "m-debug"],
        ["INFO", "m-info"],
        ["WARNING", "m-WARNING"],
        ["ERROR", "m-error"],
        ["CRITICAL", "m-critical"],
    ]
    with pytest.raises(CaptureError, match="log level must be one of"):
        Capture("r1", None).log("x", level="loud")


@metalab.operation(name="talker", version="1")
def talker(params, capture):
    capture.log(f"start {params['x']}")
    print(f"out {params['x']}")
    print(f"partial {params['x']}", end="")
    sys.stderr.write(f"err {params['x']}\n")
    logging.getLogger("mylib").info("from logging %s", params["x"])
    logging.getLogger("mylib").debug("debug is below the default level")
    capture.log(f"done {params['x']}", level="warning")
    if params["x"] == 1:
        raise RuntimeError("boom")


def _talk_exp(xs=(0, 1)):
    return metalab.Experiment("talk", talker, params=metalab.grid(x=list(xs)))


def test_capture_output_keeps_stdout_stderr_and_logging_per_run(capsys):
    res = metalab.run(_talk_exp(), capture_output=True)
    out = capsys.readouterr()
    assert "out 0" not in out.out and "err 0" not in out.err
    by_x = {r.params["x"]: r for r in res}
    for x, run in by_x.items():
        lines = run.logs.splitlines()
        text = [line.split(" ", 1)[1] for line in lines]  # drop the time stamp
        assert text == [
            f"INFO    start {x}",
            f"STDOUT  out {x}",
            f"STDERR  err {x}",
            f"INFO    mylib: from logging {x}",
            f"WARNING done {x}",
            f"STDOUT  partial {x}",
        ], run.logs
    assert by_x[1].status == "failed" and by_x[1].error["type"] == "RuntimeError"
    # Streams and the root logger are restored afterwards.
    assert logging.getLogger().level == logging.WARNING
    print("after")
    assert capsys.readouterr().out == "after\n"


def test_without_capture_output_only_capture_log_is_kept(capsys):
    res = metalab.run(_talk_exp(xs=(0,)))
    out = capsys.readouterr()
    assert "out 0" in out.out and "err 0" in out.err
    text = [line.split(" ", 1)[1] for line in res[0].logs.splitlines()]
    assert text == ["INFO    start 0", "WARNING done 0"]


@metalab.operation(name="threads", version="1")
def chatty(params, capture):
    for i in range(20):
        print(f"run {params['x']} line {i}")
        logging.getLogger("chatty").warning("run %s record %s", params["x"], i)
        time.sleep(0.001)


def test_capture_output_keeps_concurrent_thread_runs_apart():
    exp = metalab.Experiment("threads", chatty, params=metalab.grid(x=list(range(4))))
    res = metalab.run(
        exp, executor=ThreadExecutor(max_workers=2), capture_output=True, partition_size=1
    )
    assert len(res) == 4
    for run in res:
        x = run.params["x"]
        lines = run.logs.splitlines()
        assert len(lines) == 40, run.logs
        assert all(f"run {x} " in line for line in lines), run.logs
    assert type(sys.stdout).__name__ != "_Router" and type(sys.stderr).__name__ != "_Router"


def test_output_of_a_thread_started_by_the_run_is_captured():
    @metalab.operation(name="spawner", version="1")
    def spawner(capture):
        t = threading.Thread(target=lambda: print("from a helper thread"))
        t.start()
        t.join()

    res = metalab.run(metalab.Experiment("spawn", spawner), capture_output=True)
    assert "STDOUT  from a helper thread" in res[0].logs


def test_unicode_and_long_output_survive(tmp_path):
    @metalab.operation(name="uni", version="1")
    def uni():
        print("naïve 损失 🚀\n" * 3 + "x" * 10_000)

    res = metalab.run(metalab.Experiment("uni", uni), capture_output=True)
    lines = [line.split(" ", 2)[2].strip() for line in res[0].logs.splitlines()]
    assert lines == ["naïve 损失 🚀"] * 3 + ["x" * 10_000]
    assert os.listdir(tmp_path) == ["runs"]


# --- metrics through real runs ---------------------------------------------------------
@metalab.operation(name="numbers", version="1")
def numbers(params, capture):
    x = params["x"]
    capture.metrics(
        {
            "nan": float("nan"),
            "inf": math.inf,
            "ninf": -math.inf,
            "np_nan": np.float32("nan"),
            "flag": np.bool_(x > 0),
            "count": np.int64(x),
            "ratio": np.float32(0.5) * x,
        }
    )
    for step in range(5):
        capture.metric("loss", 1.0 / (step + 1) + x, step=step)
    capture.metric("loss_nan", float("nan"), step=0)
    capture.metric("loss_nan", math.inf, step=1)
    return {"returned": x * 2}


def _numbers_exp(name="numbers", xs=(0, 1, 2)):
    return metalab.Experiment(name, numbers, params=metalab.grid(x=list(xs)))


def test_nan_and_infinities_survive_parquet_into_metrics_and_table():
    metalab.run(_numbers_exp())
    res = metalab.load_results("runs/numbers")  # read back from Parquet only
    assert not list(Path("runs/numbers/journal").iterdir())
    for run in res:
        m = run.metrics
        assert math.isnan(m["nan"]) and math.isnan(m["np_nan"])
        assert m["inf"] == math.inf and m["ninf"] == -math.inf
        assert m["flag"] is (run.params["x"] > 0) and m["count"] == run.params["x"]
        assert m["returned"] == 2 * run.params["x"] and m["ratio"] == 0.5 * run.params["x"]
        assert m["loss_nan"] == math.inf  # the last value of a stepped metric
    df = res.table(as_dataframe=True)
    assert df["nan"].isna().all() and (df["inf"] == math.inf).all()
    assert (df["ninf"] == -math.inf).all() and df["flag"].tolist() == [False, True, True]
    series = res[0].metric_series("loss_nan")
    assert math.isnan(series[0]) and series[1] == math.inf


def test_stepped_metrics_series_table_and_lazy_frame():
    import dask.dataframe as dd

    res = metalab.run(_numbers_exp())
    by_x = {r.params["x"]: r for r in res}
    s = by_x[2].metric_series("loss")
    assert s.index.name == "step" and s.name == "loss" and s.index.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(s.to_numpy(), [1 / (i + 1) + 2 for i in range(5)])
    # The table shows the last value of a stepped metric, and says so.
    table = res.table(as_dataframe=True).set_index("x")
    np.testing.assert_allclose(table["loss[last]"].sort_index(), [0.2, 1.2, 2.2])
    with pytest.raises(metalab.ResultsError, match="never_recorded"):
        by_x[0].metric_series("never_recorded")  # a typo is an error, not an empty series

    frame = res.metric_frame()
    assert isinstance(frame, dd.DataFrame)
    df = frame.compute()
    assert list(df.columns) == ["run_id", "name", "step", "value", "time"]
    assert len(df) == 3 * (5 + 2)
    assert str(df["time"].dtype).startswith("datetime64") and df["step"].dtype == "int64"
    loss = res.metric_frame("loss").compute()
    assert set(loss["name"]) == {"loss"} and len(loss) == 15
    one = res.filter(x=1).metric_frame("loss").compute().sort_values("step")
    assert set(one["run_id"]) == {by_x[1].run_id}
    np.testing.assert_allclose(one["value"], by_x[1].metric_series("loss").to_numpy())


def test_a_rerun_replaces_the_steps_of_earlier_sweeps():
    metalab.run(_numbers_exp())
    res = metalab.run(_numbers_exp(), resume=False)
    assert len(res.provenance) == 2
    assert len(res.metric_frame("loss").compute()) == 15
    assert len(res[0].metric_series("loss")) == 5
    assert len(list(Path("runs/numbers/metrics").glob("*.parquet"))) == 2


def test_metric_frame_across_stores_has_an_experiment_column():
    metalab.run(_numbers_exp("first", xs=(0,)))
    metalab.run(_numbers_exp("second", xs=(0, 1)))
    both = metalab.load_results(["runs/first", "runs/second"])
    df = both.metric_frame("loss").compute()
    assert df.columns[0] == "experiment"
    assert df.groupby("experiment").size().to_dict() == {"first": 5, "second": 10}


def test_metric_frame_of_a_store_without_steps_is_empty():
    @metalab.operation(name="flat", version="1")
    def flat(capture):
        capture.metric("a", 1)

    df = metalab.run(metalab.Experiment("flat", flat)).metric_frame().compute()
    assert df.empty and list(df.columns) == ["run_id", "name", "step", "value", "time"]


def test_steps_seen_twice_while_a_journal_is_folded_count_once():
    """A journal still on disk next to the Parquet file made from it (the crash window)."""
    import pyarrow.parquet as pq

    from metalab.store.journal import JournalWriter

    res = metalab.run(_numbers_exp(xs=(5,)))
    run = res[0]
    rec = run.record
    steps = pq.read_table(next(Path("runs/numbers/metrics").glob("*.parquet"))).to_pylist()
    outcome_steps = [
        [s["name"], s["step"], s["value"], int(s["time"].timestamp() * 1e6)] for s in steps
    ]
    t0 = int(rec["started_at"].timestamp() * 1e6)
    t1 = int(rec["ended_at"].timestamp() * 1e6)
    writer = JournalWriter(
        Path("runs/numbers/journal").resolve(),
        sweep=rec["sweep"],
        part=7,
        columns={
            "run_id": [run.run_id],
            "params": [rec["params"]],
            "replicate": [0],
            "seed": [rec["seed"]],
            "attempt": [1],
        },
        worker="w",
    )
    writer.append([run.run_id, "success", t0, t1, run.metrics, {"steps": outcome_steps}])
    writer.close()
    from metalab.store import Store, read_steps

    assert read_steps(Store.open("runs/numbers").layout).num_rows == 14  # each step twice
    again = metalab.load_results("runs/numbers")
    assert len(again) == 1
    frame = again.metric_frame()
    assert frame.npartitions >= 2  # the Parquet file and the journal
    assert len(frame.compute()) == 7
    assert len(again[0].metric_series("loss")) == 5
