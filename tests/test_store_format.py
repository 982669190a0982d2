"""The store layout, read back without metalab: pandas, pyarrow.dataset, manifest.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import metalab


@metalab.operation(name="store_op", version="1")
def store_op(params, seeds, capture):
    x = params["x"]
    if x == 3:
        raise KeyError("three")
    for step in range(4):
        capture.metric("loss", 1.0 / (step + 1) + x, step=step)
    capture.metric("acc", x / 10)
    capture.artifact("pred", np.arange(x + 1, dtype="float64"))
    capture.artifact("cfg", {"x": x, "name": "é"})
    capture.log(f"done {x}")


def _exp() -> metalab.Experiment:
    return metalab.Experiment(
        name="store_fmt",
        operation=store_op,
        params=metalab.grid(x=[0, 1, 2, 3], model=[{"depth": 2, "act": "relu"}]),
        seeds=metalab.seeds(base=5, replicates=2),
    )


def _latest(df: pd.DataFrame) -> pd.DataFrame:
    """What docs/store-format.md tells readers to do: highest attempt, then latest end."""
    return df.sort_values(["attempt", "ended_at"]).drop_duplicates("run_id", keep="last")


def test_layout_and_manifest():
    exp = _exp()
    metalab.run(exp)
    root = Path("runs/store_fmt")
    for sub in ("records", "metrics", "artifacts", "sweeps"):
        assert (root / sub).is_dir(), sub
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["experiment"] == "store_fmt"
    assert manifest["operation"] == "store_op" and manifest["operation_version"] == "1"
    assert manifest["context_fingerprint"] == exp.context.fingerprint
    assert manifest["runs"] == 8
    assert manifest["metalab_store"] == 1
    sweeps = list((root / "sweeps").glob("*.json"))
    assert len(sweeps) == 1
    info = json.loads(sweeps[0].read_text())
    assert info["planned"] == 8 and info["status"] == "finished"
    assert list((root / "journal").iterdir()) == []  # journals are folded at partition end


def test_records_read_with_plain_pandas():
    exp = _exp()
    metalab.run(exp)
    df = pd.read_parquet("runs/store_fmt/records")
    assert len(df) == 8
    assert set(df["run_id"]) == set(exp.plan()["run_id"])
    for col in [
        "run_id",
        "status",
        "attempt",
        "replicate",
        "seed",
        "params",
        "started_at",
        "ended_at",
        "duration_s",
        "error_type",
        "error_message",
        "traceback",
        "artifacts",
        "logs",
        "host",
        "pid",
        "worker",
        "sweep",
        "params.x",
        "params.model.depth",
        "params.model.act",
        "metrics.acc",
        "metrics.loss",
    ]:
        assert col in df.columns, col
    assert set(df["status"]) == {"success", "failed"}
    failed = df[df["status"] == "failed"]
    assert set(failed["params.x"]) == {3}
    assert set(failed["error_type"]) == {"KeyError"}
    ok = df[df["status"] == "success"].sort_values(["params.x", "replicate"])
    assert ok["metrics.acc"].tolist() == [x / 10 for x in (0, 0, 1, 1, 2, 2)]
    assert ok["metrics.loss"].tolist() == [0.25 + x for x in (0, 0, 1, 1, 2, 2)]  # last step
    assert json.loads(ok["params"].iloc[0]) == {"model": {"act": "relu", "depth": 2}, "x": 0}
    assert str(df["ended_at"].dtype).startswith("datetime64") and "UTC" in str(df["ended_at"].dtype)
    assert (df["ended_at"] >= df["started_at"]).all()
    first = ok.iloc[0]
    assert json.loads(first["logs"])[0][1:] == ["info", "done 0"]
    arts = {a["name"]: a for a in json.loads(first["artifacts"])}
    pred = np.load(Path("runs/store_fmt") / arts["pred"]["path"])
    assert pred.tolist() == [0.0]
    cfg = json.loads((Path("runs/store_fmt") / arts["cfg"]["path"]).read_text())
    assert cfg == {"x": 0, "name": "é"}
    assert arts["pred"]["path"] == f"artifacts/{first['run_id']}/pred.npy"


def test_records_read_with_pyarrow_dataset_and_deduplicated():
    exp = _exp()
    metalab.run(exp)
    metalab.run(exp, resume=False)  # every run twice in the raw files
    dataset = ds.dataset("runs/store_fmt/records", format="parquet")
    table = dataset.to_table()
    assert table.num_rows == 16
    assert pa.types.is_string(table.schema.field("run_id").type)
    latest = _latest(table.to_pandas())
    assert len(latest) == 8
    assert set(latest["attempt"]) == {2}
    ok = dataset.to_table(filter=ds.field("status") == "success", columns=["run_id", "metrics.acc"])
    assert ok.num_rows == 12
    res = metalab.load_results("runs/store_fmt")
    got = res.table(as_dataframe=True).set_index("run_id")["acc"].sort_index()
    exp_acc = latest.set_index("run_id")["metrics.acc"].sort_index()
    pd.testing.assert_series_equal(got, exp_acc, check_names=False)


def test_stepped_metrics_in_long_form():
    metalab.run(_exp())
    steps = pd.read_parquet("runs/store_fmt/metrics")
    assert list(steps.columns) == ["run_id", "name", "step", "value", "time", "sweep"]
    assert len(steps) == 6 * 4
    one = steps[steps["run_id"] == steps["run_id"].iloc[0]].sort_values("step")
    assert one["step"].tolist() == [0, 1, 2, 3]
    assert set(one["name"]) == {"loss"}
    res = metalab.load_results("runs/store_fmt")
    run = res.filter(x=1)[0]
    series = run.metric_series("loss")
    assert series.tolist() == [1.0 + 1, 0.5 + 1, 1 / 3 + 1, 0.25 + 1]


def test_every_file_is_written_atomically():
    """No temp files are left behind and every Parquet file is complete."""
    metalab.run(_exp())
    metalab.run(_exp(), resume=False)
    root = Path("runs/store_fmt")
    leftovers = [p for p in root.rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []
    for f in root.rglob("*.parquet"):
        pq.ParquetFile(f).metadata  # noqa: B018 - raises on a truncated file
    for f in root.rglob("*.json"):
        if "artifacts" not in f.parts:
            json.loads(f.read_text())


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    from metalab.store.atomic import atomic_write, atomic_write_text

    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    def broken(p: Path) -> None:
        p.write_text("half")
        raise RuntimeError("disk full")

    try:
        atomic_write(target, broken)
    except RuntimeError:
        pass
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_relative_store_path_and_relative_artifact_paths(tmp_path):
    metalab.run(_exp(), store="relative/store")
    assert (tmp_path / "relative/store/manifest.json").exists()
    df = pd.read_parquet(tmp_path / "relative/store/records")
    arts = json.loads(df["artifacts"].dropna().iloc[0])
    assert not os.path.isabs(arts[0]["path"])  # artifact paths are relative to the store


DOC = Path(__file__).resolve().parents[1] / "docs" / "store-format.md"


def _doc_blocks() -> dict[str, str]:
    """The python code blocks of docs/store-format.md, keyed by the reader they use."""
    import re

    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    out = {}
    for b in blocks:
        for lib in ("duckdb", "polars", "dask.dataframe", "pyarrow.dataset", "pandas"):
            if f"import {lib}" in b:
                out[lib] = b
                break
    return out


def test_documented_read_examples_run():
    """The pandas and pyarrow examples of docs/store-format.md give the deduplicated runs."""
    import importlib.util

    @metalab.operation(name="doc_op")
    def doc_op(params, seeds, capture):
        for step in range(3):
            capture.metric("loss", 1.0 / (step + 1), step=step)
        return {"score": params["learning_rate"] * float(seeds.numpy().random())}

    exp = metalab.Experiment(
        name="my_exp",
        operation=doc_op,
        params=metalab.grid(learning_rate=[0.1, 0.01]),
        seeds=metalab.seeds(base=1, replicates=2),
    )
    metalab.run(exp)
    metalab.run(exp, resume=False)
    blocks = _doc_blocks()
    assert set(blocks) == {"pandas", "pyarrow.dataset", "duckdb", "polars", "dask.dataframe"}
    expected = metalab.load_results("runs/my_exp").table(as_dataframe=True)
    for lib, code in blocks.items():
        if importlib.util.find_spec(lib.split(".")[0]) is None:
            continue  # duckdb / polars are not dependencies of metalab
        ns: dict = {}
        exec(compile(code, f"store-format.md[{lib}]", "exec"), ns)
        latest = ns["latest"]
        if not isinstance(latest, pd.DataFrame):
            latest = latest.to_pandas()
        assert len(latest) == 4, lib
        assert sorted(latest["run_id"]) == sorted(expected["run_id"]), lib
        assert set(latest["attempt"]) == {2}, lib
        if lib == "pandas":
            assert len(ns["steps"]) == 2 * 4 * 3  # both sweeps wrote their points
            assert len(ns["current"]) == 4 * 3  # the points of the current records


# ------------------------------------------------------- the recipes after crashes
_EXECUTED: list[int] = []  # runs executed by this process


@metalab.operation(name="crashy", version="1")
def crashy_op(params, capture):
    lr = params["learning_rate"]
    i = round(lr * 100)
    _EXECUTED.append(i)
    if os.environ.get("CRASHY_KILL_AFTER") == str(len(_EXECUTED) - 1):
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("CRASHY_SLOW"):
        time.sleep(0.025)  # the journal flushes after every run slower than 20 ms
    if i % 7 == 0 and os.environ.get("CRASHY_FAIL"):
        raise RuntimeError("flaky")
    capture.metric("score", lr * 3)
    for step in range(2):
        capture.metric("loss", lr + step, step=step)


def crashy_exp() -> metalab.Experiment:
    lrs = [i / 100 for i in range(48)]
    return metalab.Experiment(
        name="my_exp", operation=crashy_op, params=metalab.grid(learning_rate=lrs)
    )


CRASHY_DRIVER = """
import os, pathlib, signal, sys, time
import metalab, test_store_format as t
from metalab.store import Store
mode, store = sys.argv[1], sys.argv[2]
go = os.environ.get("CRASHY_GO")
while go and not os.path.exists(go):
    time.sleep(0.001)
if mode == "run":
    metalab.run(t.crashy_exp(), store=store, partition_size=int(os.environ["CRASHY_PART"]))
    sys.exit(0)
if mode == "compact":
    Store.open(store).compact(at_files=2)
    sys.exit(0)
folder, n = mode.split(":")  # SIGKILL at the n-th deletion of a compacted input
calls = []
if folder == "replace":  # ... or just before the merged file is renamed into place
    real = os.replace
    def replace(src, dst):
        if os.path.basename(dst).startswith("compact-"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst)
    os.replace = replace
else:
    real = pathlib.Path.unlink
    def unlink(self, missing_ok=False):
        if self.parent.name == folder and self.suffix == ".parquet":
            calls.append(self)
            if len(calls) == int(n):
                os.kill(os.getpid(), signal.SIGKILL)
        return real(self, missing_ok)
    pathlib.Path.unlink = unlink
Store.open(store).compact(at_files=2)
"""


def _crashy(mode: str, store: Path, **env: str) -> subprocess.Popen[str]:
    full = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "CRASHY_PART": "4", **env}
    return subprocess.Popen(
        [sys.executable, "-c", CRASHY_DRIVER, mode, str(store)],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _together(procs: list[subprocess.Popen[str]], go: Path) -> None:
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    go.unlink()


def _killed(p: subprocess.Popen[str]) -> None:
    _, err = p.communicate(timeout=300)
    assert p.returncode == -signal.SIGKILL, (p.args, err)


def _answer(latest: object, current: object) -> tuple[dict, list]:
    """(run_id -> (status, attempt, sweep, score), sorted points) of a recipe's results."""
    frames = []
    for x in (latest, current):
        frames.append(x if isinstance(x, pd.DataFrame) else x.to_pandas())
    recs, steps = frames
    assert recs["run_id"].is_unique
    score = "metrics.score" if "metrics.score" in recs else "score"
    rows = {
        r["run_id"]: (r["status"], int(r["attempt"]), r["sweep"], _num(r[score]))
        for r in recs.to_dict(orient="records")
    }
    points = sorted(
        (r["run_id"], r["name"], int(r["step"]), float(r["value"]))
        for r in steps.to_dict(orient="records")
    )
    return rows, points


def _num(v: object) -> float | None:
    return None if v is None or pd.isna(v) else float(v)  # type: ignore[arg-type]


def _metalab_answer(store: Path) -> tuple[dict, list]:
    res = metalab.load_results(store)
    return _answer(res.to_pandas(full=True), res.metric_frame().compute())


def _check_recipes(store: Path, *, exact: bool) -> None:
    """Run every recipe of docs/store-format.md and compare with load_results.

    Not ``exact``: the store has a journal of a killed driver, which the recipes cannot
    see; its runs are left out of the comparison (every other run must match).
    """
    from metalab.store.journal import Journal

    in_journal = {o[0] for p in (store / "journal").glob("*.jsonl") for o in Journal(p).outcomes}
    assert bool(in_journal) != exact
    want_rows, want_points = _metalab_answer(store)
    for lib, code in _doc_blocks().items():
        ns: dict = {}
        exec(compile(code, f"store-format.md[{lib}]", "exec"), ns)
        rows, points = _answer(ns["latest"], ns["current"])
        if exact:
            assert (rows, points) == (want_rows, want_points), lib
            continue
        assert set(rows) <= set(want_rows), lib
        for run_id, row in rows.items():
            if run_id not in in_journal:
                assert row == want_rows[run_id], (lib, run_id)
        keep = [p for p in want_points if p[0] not in in_journal]
        assert [p for p in points if p[0] not in in_journal] == keep, lib


def _raw_duplicates(folder: Path, key: list[str]) -> int:
    raw = ds.dataset(folder, format="parquet").to_table(columns=key)
    return raw.num_rows - len(set(zip(*raw.to_pydict().values(), strict=True)))


def test_recipes_give_metalabs_answer_after_crashes_and_concurrent_drivers(tmp_path):
    from metalab.store import Store
    from metalab.store.repair import repair

    store, go = Path("runs/my_exp"), tmp_path / "go"
    # Two drivers fill a new store at once (every run twice, 7 of 48 failing), then two
    # compactions run at once.
    go_env = {"CRASHY_GO": str(go), "CRASHY_PART": "8"}
    _together([_crashy("run", store, CRASHY_FAIL="1", **go_env) for _ in range(2)], go)
    _together([_crashy("compact", store, **go_env) for _ in range(2)], go)
    _check_recipes(store, exact=True)

    # A resume retries the 7 failed runs (attempt 2) in partitions of 4 and 3: the first
    # partition finishes, and the driver is SIGKILLed in the second.
    _killed(_crashy("run", store, CRASHY_KILL_AFTER="5", CRASHY_SLOW="1"))
    _killed(_crashy("metrics:2", store))  # records compacted; metrics inputs left behind
    # The next resume folds that journal, and is SIGKILLed after one of the 2 runs left.
    _killed(_crashy("run", store, CRASHY_KILL_AFTER="1", CRASHY_SLOW="1"))
    _killed(_crashy("records:2", store))  # merged file written, one input left behind
    _killed(_crashy("replace:0", store))  # merged file written, never renamed
    assert list((store / "records").glob(".tmp-*.parquet"))
    assert _raw_duplicates(store / "records", ["run_id", "sweep"]) > 0
    assert _raw_duplicates(store / "metrics", ["run_id", "sweep", "name", "step", "time"]) > 0
    _check_recipes(store, exact=False)

    report = repair(Store.open(store))  # folds the journal of the killed driver
    assert report.runs_folded > 0 and report.moved == 0
    assert list((store / "records").glob(".tmp-*.parquet")), "a fresh temp file stays"
    _check_recipes(store, exact=True)
    res = metalab.load_results(store)
    assert len(res) == 48 and res.counts()["success"] == 48 - 1  # one is still failed


# ------------------------------------------- the recipes on stores whose files differ
@metalab.operation(name="uneven", version="1")
def uneven_op(params, capture):
    lr = params["learning_rate"]
    if lr >= 0.02:
        capture.metric("late", lr * 2)  # a metric missing from the first file
    if lr == 0.01:
        raise RuntimeError("a file whose runs all failed has no metric columns at all")
    capture.metric("score", lr * 3)
    if os.environ.get("UNEVEN_STEPS"):
        for step in range(2):
            capture.metric("loss", lr + step, step=step)


def _uneven(steps: bool) -> Path:
    os.environ.pop("UNEVEN_STEPS", None)
    if steps:
        os.environ["UNEVEN_STEPS"] = "1"
    try:
        exp = metalab.Experiment(
            name="my_exp",
            operation=uneven_op,
            params=metalab.grid(learning_rate=[0.0, 0.01, 0.02, 0.03]),
        )
        metalab.run(exp, partition_size=1)  # one file per run
    finally:
        os.environ.pop("UNEVEN_STEPS", None)
    return Path("runs/my_exp")


@pytest.mark.parametrize("steps", [True, False], ids=["stepped", "no-stepped-metrics"])
def test_recipes_unify_files_that_differ_in_columns(steps):
    """Every recipe keeps a metric that the first file lacks, with or without steps."""
    store = _uneven(steps)
    files = sorted((store / "records").glob("*.parquet"))
    columns = [set(pq.read_schema(f).names) for f in files]
    assert len(files) == 4 and "metrics.late" not in columns[0]
    assert any("metrics.late" in c for c in columns) and len({frozenset(c) for c in columns}) > 1
    assert bool(list((store / "metrics").glob("*.parquet"))) == steps
    want_rows, want_points = _metalab_answer(store)
    assert len(want_points) == (6 if steps else 0)
    blocks = _doc_blocks()
    assert set(blocks) == {"pandas", "pyarrow.dataset", "duckdb", "polars", "dask.dataframe"}
    for lib, code in blocks.items():
        ns: dict = {}
        exec(compile(code, f"store-format.md[{lib}]", "exec"), ns)
        assert _answer(ns["latest"], ns["current"]) == (want_rows, want_points), lib
        latest = ns["latest"]
        latest = latest if isinstance(latest, pd.DataFrame) else latest.to_pandas()
        late = latest.set_index("run_id")["metrics.late"]
        assert sorted(late.dropna().tolist()) == [0.04, 0.06], lib


@pytest.mark.parametrize("later", ["success", "failed"])
def test_a_narrow_read_breaks_ties_by_end_time(tmp_path, later):
    """Two copies of each run, same attempt: the later end wins, also when the caller
    asked for columns without ``ended_at`` (read again with it only when ids repeat)."""
    from metalab.store import Store

    store = tmp_path / "s"
    metalab.run(_exp(), store=store)
    (original,) = (store / "records").glob("*.parquet")
    table = pq.read_table(original)
    shift = pd.Timedelta(seconds=5) if later == "failed" else -pd.Timedelta(seconds=5)
    copy = table.set_column(
        table.schema.get_field_index("status"), "status", pa.array(["failed"] * table.num_rows)
    )
    ended = (table.column("ended_at").to_pandas() + shift).to_numpy()
    i = copy.schema.get_field_index("ended_at")
    copy = copy.set_column(i, "ended_at", pa.array(ended, table.schema.field(i).type))
    pq.write_table(copy, store / "records" / "other-000000.parquet")
    status = Store.open(store).status_table()
    assert status.column_names == ["run_id", "status", "attempt", "artifacts"]
    # Given the plan's ids (16 records, 8 ids: no match), the copies are still found.
    planned = pa.array(sorted(set(table.column("run_id").to_pylist())), pa.string())
    assert (
        Store.open(store).status_table(planned).sort_by("run_id").equals(status.sort_by("run_id"))
    )
    assert status.num_rows == 8
    got = dict(zip(*status.select(["run_id", "status"]).to_pydict().values(), strict=True))
    first = dict(zip(*table.select(["run_id", "status"]).to_pydict().values(), strict=True))
    assert got == (first if later == "success" else dict.fromkeys(first, "failed"))
    assert "success" in first.values()


def test_records_matching_the_plan_need_no_search_for_copies(tmp_path, monkeypatch):
    """status_table(planned) takes records equal to the plan, row for row, as they are;
    the same number of rows with one run twice is deduplicated."""
    from metalab.store import Store, reader

    store = tmp_path / "s"
    metalab.run(_exp(), store=store)
    st = Store.open(store)
    ids = st.status_table().column("run_id").combine_chunks()
    with monkeypatch.context() as m:

        def no_search(run_ids):
            raise AssertionError("records equal to the plan were searched for copies")

        m.setattr(reader, "may_have_duplicates", no_search)
        assert st.status_table(ids).column("run_id").combine_chunks().equals(ids)
    (original,) = (store / "records").glob("*.parquet")
    table = pq.read_table(original)
    # The same 8 rows, but the last run replaced by a newer attempt of the first.
    first = table.slice(0, 1)
    newer = first.set_column(
        first.schema.get_field_index("attempt"), "attempt", pa.array([9], pa.int32())
    )
    original.unlink()
    pq.write_table(pa.concat_tables([table.slice(0, 7), newer]), original)
    status = Store.open(store).status_table(ids)
    assert status.num_rows == 7
    attempts = dict(zip(*status.select(["run_id", "attempt"]).to_pydict().values(), strict=True))
    assert attempts[ids[0].as_py()] == 9
