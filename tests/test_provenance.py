"""Provenance: environment and git per store and sweep, per-run fields, source-change warning."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import metalab
from metalab import SourceChangedWarning
from metalab.provenance import environment, git_info

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@metalab.operation(name="prov", version="1")
def prov(params, capture):
    capture.metric("y", params["x"] + 1)


def _exp() -> metalab.Experiment:
    return metalab.Experiment("prov", prov, params=metalab.grid(x=[1, 2, 3]))


def test_each_sweep_records_environment_and_operation_source():
    res = metalab.run(_exp())
    (sweep,) = res.provenance
    assert sweep["operation"] == "prov" and sweep["operation_version"] == "1"
    assert sweep["source_hash"] == prov.source_hash and len(prov.source_hash) == 64
    p = sweep["provenance"]
    assert p["metalab"] == metalab.__version__
    assert p["python"] == platform.python_version()
    assert p["platform"] == platform.platform()
    assert p["hostname"] == socket.gethostname() and p["pid"] == os.getpid()
    assert p["packages"]["numpy"] == np.__version__
    assert p["packages"]["pandas"] == pd.__version__
    assert p["packages"]["pyarrow"] == pa.__version__
    assert p["packages"]["dask"] == dask.__version__
    op = p["operation"]
    assert op["source_file"] == os.path.abspath(__file__)
    assert op["source_hash"] == prov.source_hash and op["qualname"] == "prov"
    assert p["git"] is None or isinstance(p["git"]["dirty"], bool)
    # The same dict is on disk, one file per sweep.
    on_disk = json.loads(Path(f"runs/prov/sweeps/{sweep['sweep']}.json").read_text())
    assert on_disk["provenance"]["hostname"] == socket.gethostname()
    metalab.run(_exp(), resume=False)
    assert len(metalab.load_results("runs/prov").provenance) == 2


def test_store_provenance_is_written_once():
    metalab.run(_exp())
    manifest = Path("runs/prov/manifest.json")
    first = json.loads(manifest.read_text())
    assert first["provenance"]["metalab"] == metalab.__version__
    assert first["provenance"]["python"] == platform.python_version()
    metalab.run(_exp(), resume=False)
    # Each sweep updates the description and history; the creator's provenance stays.
    assert json.loads(manifest.read_text())["provenance"] == first["provenance"]


def test_each_run_records_host_pid_worker_and_times():
    res = metalab.run(_exp())
    for run in res:
        rec = run.record
        assert rec["host"] == socket.gethostname()
        assert rec["pid"] == os.getpid()
        assert rec["worker"] == f"local:{os.getpid()}"
        assert rec["started_at"] <= rec["ended_at"]
        assert rec["started_at"].tzinfo is not None
        span = (rec["ended_at"] - rec["started_at"]).total_seconds()
        assert abs(run.duration_s - span) < 1e-6
        assert rec["sweep"] == res.provenance[0]["sweep"]


# --- git --------------------------------------------------------------------------------------
def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "-c",
            "commit.gpgsign=false",
            *args,
        ],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def _load_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"opmod_{uuid.uuid4().hex}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


OP_SOURCE = """
import metalab


@metalab.operation(name="train", version="{version}")
def train(params, capture):
    capture.metric("y", params["x"] * {factor})
"""


def _write_op(path: Path, factor: int, version: str = "1") -> metalab.Operation:
    path.write_text(textwrap.dedent(OP_SOURCE.format(factor=factor, version=version)))
    return _load_module(path).train


@needs_git
def test_git_commit_and_dirty_flag_of_the_operations_repository(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    op = _write_op(repo / "ops.py", 2)
    (repo / "README").write_text("v1\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    head = _git(repo, "rev-parse", "HEAD")

    res = metalab.run(metalab.Experiment("train", op, params=metalab.grid(x=[1])))
    g = res.provenance[-1]["provenance"]["git"]
    assert g["commit"] == head and g["dirty"] is False and g["source_tracked"] is True
    assert Path(g["root"]).resolve() == repo.resolve()

    (repo / "README").write_text("v2\n")  # a tracked file changed
    res = metalab.run(metalab.Experiment("train", op, params=metalab.grid(x=[1])))
    g = res.provenance[-1]["provenance"]["git"]
    assert g["commit"] == head and g["dirty"] is True

    untracked = _write_op(repo / "new_ops.py", 2)  # committed state lacks this source
    _git(repo, "checkout", "-q", "--", "README")
    info = git_info(repo / "new_ops.py")
    assert info["dirty"] is True and info["source_tracked"] is False
    assert untracked.source_hash == op.source_hash  # same text, other file


@needs_git
def test_git_info_of_a_repository_without_commits(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "f.py").write_text("x = 1\n")
    info = git_info(tmp_path / "f.py")
    assert info["commit"] is None and info["dirty"] is True


def test_no_git_or_no_repository_is_tolerated(tmp_path, monkeypatch):
    outside = tmp_path / "plain"
    outside.mkdir()
    (outside / "f.py").write_text("x = 1\n")
    if (
        shutil.which("git")
        and subprocess.run(["git", "rev-parse"], cwd=outside, capture_output=True).returncode != 0
    ):
        assert git_info(outside / "f.py") is None
    assert git_info(None) is None
    assert git_info(tmp_path / "missing" / "f.py") is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no git executable at all
    assert git_info(Path(__file__)) is None
    res = metalab.run(_exp())
    assert res.provenance[0]["provenance"]["git"] is None
    assert res.counts()["success"] == 3


def test_environment_is_plain_json():
    env = environment()
    assert json.loads(json.dumps(env)) == env
    assert env["executable"] == sys.executable


# --- source-changed warning -----------------------------------------------------------------------
def _run_quietly(exp: metalab.Experiment, **kw) -> metalab.Results:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return metalab.run(exp, **kw)


def _train_exp(op: metalab.Operation, xs=(1, 2)) -> metalab.Experiment:
    return metalab.Experiment("train", op, params=metalab.grid(x=list(xs)))


def test_changed_source_with_the_same_version_warns_once(tmp_path):
    op_a = _write_op(tmp_path / "op_a.py", 10)
    op_b = _write_op(tmp_path / "op_b.py", 20)
    assert op_a.source_hash != op_b.source_hash

    _run_quietly(_train_exp(op_a))
    _run_quietly(_train_exp(op_a))  # nothing changed: no warning
    with pytest.warns(SourceChangedWarning) as record:
        res = metalab.run(_train_exp(op_b))
    (w,) = record
    msg = str(w.message)
    assert "operation 'train'" in msg and "version='1'" in msg and "2 existing record" in msg
    assert f"now {op_b.source_hash[:12]}" in msg
    assert "Bump the version" in msg and "version=..." in msg
    assert f"metalab.acknowledge_source({str(Path('runs/train').resolve())!r}, train)" in msg
    assert w.filename == __file__  # points at the caller's metalab.run line
    assert sorted(r.metrics["y"] for r in res) == [10, 20]  # old results were kept
    # Warned once: the runs after it (which execute nothing) stay quiet.
    for _ in range(3):
        _run_quietly(_train_exp(op_b))

    _run_quietly(_train_exp(_write_op(tmp_path / "op_c.py", 20, version="2")))  # bumped
    _run_quietly(_train_exp(op_b), resume=False)  # reruns everything: no warning
    _run_quietly(_train_exp(op_b))  # records are now from op_b's source
    with pytest.warns(SourceChangedWarning, match="'train'"):  # back to op_a's code
        metalab.run(_train_exp(op_a))
    _run_quietly(_train_exp(op_a))


def test_a_run_that_executes_nothing_still_warns_the_first_time(tmp_path):
    """The edit-and-rerun case: every run is skipped, so the results are all old code's."""
    _run_quietly(_train_exp(_write_op(tmp_path / "op_a.py", 10)))
    op_b = _write_op(tmp_path / "op_b.py", 20)
    with pytest.warns(SourceChangedWarning, match="2 existing record"):
        res = metalab.run(_train_exp(op_b))
    assert res.provenance[-1]["to_run"] == 0
    _run_quietly(_train_exp(op_b))
    # Runs not made before (a grown grid) with records of the old code in the plan: the
    # edit was already reported, so no new warning either.
    _run_quietly(_train_exp(op_b, xs=(1, 2, 3)))


def test_warning_count_is_per_edit_and_per_store(tmp_path):
    op_a = _write_op(tmp_path / "op_a.py", 10)
    op_b = _write_op(tmp_path / "op_b.py", 20)
    for store in ("s1", "s2"):
        _run_quietly(_train_exp(op_a), store=store)
    with pytest.warns(SourceChangedWarning):
        metalab.run(_train_exp(op_b), store="s1")
    with pytest.warns(SourceChangedWarning):  # the other store was not told yet
        metalab.run(_train_exp(op_b), store="s2")
    op_c = _write_op(tmp_path / "op_c.py", 30)  # a second edit is news again
    with pytest.warns(SourceChangedWarning, match=f"now {op_c.source_hash[:12]}"):
        metalab.run(_train_exp(op_c), store="s1")
    notes = sorted(p.name.split("-")[0] for p in Path("s1/sources").iterdir())
    assert notes == ["warned", "warned"]


def test_warning_as_error_keeps_raising_until_settled(tmp_path):
    _run_quietly(_train_exp(_write_op(tmp_path / "op_a.py", 10)))
    op_b = _write_op(tmp_path / "op_b.py", 20)
    for _ in range(2):  # -W error / filterwarnings=error: not silenced by having raised
        with pytest.raises(SourceChangedWarning):
            _run_quietly(_train_exp(op_b))
    assert metalab.acknowledge_source("runs/train", op_b) != []
    _run_quietly(_train_exp(op_b))


def test_acknowledged_edit_does_not_warn(tmp_path):
    op_a = _write_op(tmp_path / "op_a.py", 10)
    _run_quietly(_train_exp(op_a))
    op_b = _write_op(tmp_path / "op_b.py", 20)
    assert metalab.acknowledge_source("runs/train", op_b) == [op_a.source_hash]
    res = _run_quietly(_train_exp(op_b))
    assert sorted(r.metrics["y"] for r in res) == [10, 20]  # records kept, nothing rerun
    (note,) = [json.loads(p.read_text()) for p in Path("runs/train/sources").iterdir()]
    assert note["kind"] == "acknowledged" and note["source_hash"] == op_b.source_hash
    assert note["older"] == [op_a.source_hash] and note["operation"] == "train"
    # It covered the code as it was: a later edit warns again.
    op_c = _write_op(tmp_path / "op_c.py", 30)
    with pytest.warns(SourceChangedWarning):
        metalab.run(_train_exp(op_c))
    # An experiment works as well; nothing left to accept gives [].
    assert metalab.acknowledge_source(Path("runs/train"), _train_exp(op_a)) != []
    _run_quietly(_train_exp(op_a))
    assert metalab.acknowledge_source("runs/train", op_a) != []  # op_b, op_c sweeps
    _run_quietly(_train_exp(op_b, xs=(3,)))
    op_d = _write_op(tmp_path / "op_d.py", 40, version="9")
    _run_quietly(_train_exp(op_d))
    assert metalab.acknowledge_source("runs/train", op_d) == []


def test_acknowledge_source_mistakes(tmp_path):
    op = _write_op(tmp_path / "op_a.py", 10)
    with pytest.raises(metalab.StoreError, match="no metalab store"):
        metalab.acknowledge_source(tmp_path / "missing", op)
    _run_quietly(_train_exp(op))
    with pytest.raises(metalab.ExperimentError, match="takes a metalab operation"):
        metalab.acknowledge_source("runs/train", "train")
    other = _write_op(tmp_path / "op_v2.py", 10, version="2")
    with pytest.raises(metalab.ExperimentError, match=r"no sweep of operation 'train' version"):
        metalab.acknowledge_source("runs/train", other)
    namespace: dict = {}
    exec(compile("def f(params):\n    return {}\n", "<no file>", "exec"), namespace)
    nofile = metalab.operation(namespace["f"], name="train", version="1")
    with pytest.raises(metalab.ExperimentError, match="no source file"):
        metalab.acknowledge_source("runs/train", nofile)


CLI_EXPERIMENT = """
import metalab


@metalab.operation(name="cli_train", version="1")
def train(params, capture):
    capture.metric("y", params["x"] * {factor})


exp = metalab.Experiment("cli_train", train, params=metalab.grid(x=[1, 2]))
"""


def _cli_run(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METALAB", "PYTHONWARN"))}
    return subprocess.run(
        [sys.executable, "-m", "metalab", "run", "exp.py:exp", "--quiet"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=True,
    )


def test_cli_warning_points_at_the_experiment_file_once(tmp_path):
    exp_file = tmp_path / "exp.py"
    exp_file.write_text(CLI_EXPERIMENT.format(factor=2))
    assert "SourceChangedWarning" not in _cli_run(tmp_path).stderr
    exp_file.write_text(CLI_EXPERIMENT.format(factor="(1 + 1)"))  # a harmless edit
    err = _cli_run(tmp_path).stderr
    decorator = CLI_EXPERIMENT.splitlines().index(
        '@metalab.operation(name="cli_train", version="1")'
    )
    assert f"{exp_file}:{decorator + 1}: SourceChangedWarning: the source code of" in err
    assert "cli.py" not in err and "metalab/sweep" not in err
    assert "SourceChangedWarning" not in _cli_run(tmp_path).stderr  # once


def test_no_warning_without_source_or_earlier_records(tmp_path):
    namespace: dict = {}
    exec(compile("def f(params):\n    return {'y': params['x']}\n", "<no file>", "exec"), namespace)
    op = metalab.operation(namespace["f"], name="train", version="1")
    assert op.source_hash is None
    _run_quietly(metalab.Experiment("train", op, params=metalab.grid(x=[1])))
    op_a = _write_op(tmp_path / "op_a.py", 10)
    _run_quietly(metalab.Experiment("train", op_a, params=metalab.grid(x=[1])))
    # A different parameter (no existing record for it) does not warn either.
    op_b = _write_op(tmp_path / "op_b.py", 20)
    _run_quietly(metalab.Experiment("train", op_b, params=metalab.grid(x=[5])))


def test_source_changed_warning_is_public():
    assert issubclass(SourceChangedWarning, UserWarning)
    assert "SourceChangedWarning" in metalab.__all__


def test_provenance_collected_after_the_sweep_starts_is_in_its_file(tmp_path, monkeypatch):
    """Slow git calls do not hold up the runs: the sweep file gets the provenance at the
    end, and while the sweep runs it already names its driver (host, pid)."""
    import threading

    from metalab import provenance
    from metalab.store.journal import HOST

    release = threading.Event()
    real = provenance.collect

    def slow(op):
        release.wait(30)
        return real(op)

    seen = {}

    @metalab.operation(name="peek", version="1")
    def peek(params):
        (sweep_file,) = (tmp_path / "s" / "sweeps").glob("*.json")
        seen.update(json.loads(sweep_file.read_text()))
        release.set()

    monkeypatch.setattr(provenance, "collect", slow)
    res = metalab.run(
        metalab.Experiment("peek", peek, params=metalab.grid(x=[1])), store=tmp_path / "s"
    )
    assert "provenance" not in seen and seen["pid"] == os.getpid()
    assert seen["host"] == HOST
    (sweep,) = res.provenance
    assert sweep["provenance"]["python"] == platform.python_version()
