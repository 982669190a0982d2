"""SlurmExecutor on the real local SLURM (../shared/scripts/start-slurm.sh).

One or two 1-core jobs per test.  The operations and the context class below live in
this test module, which the SLURM workers cannot import (they start in the test's
working folder with a fresh sys.path): they reach the workers by value.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import metalab
from metalab import SlurmExecutor

pytestmark = pytest.mark.slurm

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _executor(**kw) -> SlurmExecutor:
    opts = {
        "cores": 1,
        "memory": "1GB",
        "walltime": "00:10:00",
        "interface": "lo",
        "worker_timeout_s": 90,
        "job_name": f"mltest-{uuid.uuid4().hex[:6]}",
    }
    opts.update(kw)
    return SlurmExecutor(**opts)


def _queued(job_name: str) -> str:
    res = subprocess.run(
        ["squeue", "-h", "-n", job_name, "-o", "%i %T"], capture_output=True, text=True, timeout=30
    )
    return res.stdout.strip()


def _gone(job_name: str) -> bool:
    """True once no job of that name is queued or running (cancelled jobs leave soon)."""
    end = time.monotonic() + 30
    while time.monotonic() < end:
        states = _queued(job_name)
        if not states or all(
            s.split()[1] in ("COMPLETING", "CANCELLED") for s in states.splitlines()
        ):
            return True
        time.sleep(0.2)
    return False


def _log(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


@metalab.context_spec
class SideChannel:
    log: str
    victim: int
    victim_file: str
    sleep: float


@metalab.operation(name="slurm_op", version="1")
def slurm_op(params, seeds, context):
    i = params["i"]
    job = os.environ.get("SLURM_JOB_ID", "none")
    _log(context.log, f"start {i} {job}")
    if i == context.victim and not os.path.exists(context.victim_file):
        Path(context.victim_file + ".tmp").write_text(job)
        os.replace(context.victim_file + ".tmp", context.victim_file)
        time.sleep(120)  # the test cancels this job now
    if context.sleep:
        time.sleep(context.sleep)
    _log(context.log, f"end {i} {job}")
    return {
        "u": float(seeds.numpy().random()),
        # 1.0 when this worker could import the test module by name (it must not)
        "importable": float(importlib.util.find_spec(__name__) is not None),
        "on_slurm": float(job != "none"),
    }


def _exp(tmp_path: Path, n: int, *, victim: int = -1, sleep: float = 0.0) -> metalab.Experiment:
    ctx = SideChannel(
        log=str(tmp_path / "side.log"),
        victim=victim,
        victim_file=str(tmp_path / "victim"),
        sleep=sleep,
    )
    return metalab.Experiment(
        name="slurm_sweep",
        version="1",
        context=ctx,
        operation=slurm_op,
        params=metalab.grid(i=list(range(n))),
        seeds=metalab.seeds(base=11),
    )


def test_pi_example_runs_on_slurm(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("pi_mc_example", EXAMPLES / "pi_mc.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    ex = _executor()
    res = metalab.run(mod.exp, executor=ex, store=tmp_path / "pi")
    df = res.to_pandas(full=True)
    assert len(df) == 9 and (df["status"] == "success").all()
    assert (abs(df["pi_estimate"] - 3.14159) < 0.2).all()
    # identical to the in-process result: same seeds, same numbers
    local = metalab.run(mod.exp, store=tmp_path / "pi_local").to_pandas()
    assert sorted(local["pi_estimate"]) == sorted(df["pi_estimate"])
    assert "Dask dashboard at http" in capsys.readouterr().err
    assert _gone(ex.cluster_kwargs["job_name"])  # metalab cancelled its worker job


def test_thousand_run_sweep_with_code_the_workers_cannot_import(tmp_path):
    exp = _exp(tmp_path, 1000)
    res = metalab.run(exp, executor=_executor(jobs=2), store=tmp_path / "s")
    df = res.to_pandas(full=True)
    assert len(df) == 1000 and (df["status"] == "success").all()
    assert (df["on_slurm"] == 1.0).all()
    assert (df["importable"] == 0.0).all()  # shipped by value, not imported
    assert df["run_id"].is_unique
    # resume: nothing left to do, no job needed
    again = metalab.run(exp, store=tmp_path / "s")
    assert len(again.to_pandas()) == 1000


def test_scancel_mid_sweep_loses_only_the_run_in_flight(tmp_path):
    n, victim = 60, 25  # partitions of 20: run 25 is in the middle of the second one
    exp = _exp(tmp_path, n, victim=victim, sleep=0.03)
    cancelled: list[str] = []

    def cancel():
        vf = tmp_path / "victim"
        end = time.monotonic() + 120
        while not vf.exists() and time.monotonic() < end:
            time.sleep(0.05)
        job = vf.read_text()
        subprocess.run(["scancel", job], check=True, timeout=30)
        cancelled.append(job)

    t = threading.Thread(target=cancel, daemon=True)
    t.start()
    # one job: the sweep can only finish on the replacement adaptive scaling submits
    res = metalab.run(exp, executor=_executor(jobs=1), store=tmp_path / "s", partition_size=20)
    t.join()
    df = res.to_pandas()
    assert len(df) == n and (df["status"] == "success").all()
    ids: list[str] = []
    for f in (tmp_path / "s" / "records").glob("*.parquet"):
        ids += pq.read_table(f, columns=["run_id"]).column("run_id").to_pylist()
    assert len(ids) == len(set(ids)) == n  # exactly one record per run
    starts: dict[int, int] = {}
    ends: dict[int, int] = {}
    jobs_of: dict[str, set[int]] = {}
    for line in (tmp_path / "side.log").read_text().splitlines():
        kind, i, job = line.split()
        d = starts if kind == "start" else ends
        d[int(i)] = d.get(int(i), 0) + 1
        if kind == "end":
            jobs_of.setdefault(job, set()).add(int(i))
    assert all(ends[i] == 1 for i in range(n))  # no completed run was executed again
    assert starts[victim] == 2 and sum(starts.values()) == n + 1
    assert set(range(20, 25)) <= jobs_of[cancelled[0]]  # finished before the scancel
    assert len(jobs_of) >= 2  # a replacement job finished the sweep


def test_workers_that_cannot_start_fail_fast_with_the_cause(tmp_path):
    # The system Python has no dask: every worker job dies at once.
    ex = _executor(python="/usr/bin/python3", worker_timeout_s=8)
    with pytest.raises(metalab.ExecutorError) as info:
        metalab.run(_exp(tmp_path, 5), executor=ex, store=tmp_path / "s")
    msg = str(info.value)
    assert "no Dask worker connected within 8 s" in msg
    assert "No module named 'distributed'" in msg  # the worker log, quoted
    assert _gone(ex.cluster_kwargs["job_name"])
    sweeps = metalab.load_results(tmp_path / "s").provenance
    assert sweeps[-1]["status"] == "incomplete"


@pytest.mark.timeout(900)
def test_worker_lifetime_retires_jobs_without_losing_runs(tmp_path):
    # 240 runs of 0.1 s on one 1-core job take >= 24 s; the worker retires after ~15 s and
    # adaptive scaling submits a replacement job that finishes the sweep.  The lifetime is
    # long enough that a worker started on a heavily loaded machine (imports alone took
    # > 6 s at a load of 15) still finishes partitions before it retires.
    n = 240
    exp = _exp(tmp_path, n, sleep=0.1)
    ex = _executor(jobs=1, worker_lifetime="15s", lifetime_stagger="1s")
    res = metalab.run(exp, executor=ex, store=tmp_path / "s", partition_size=10)
    df = res.to_pandas()
    assert len(df) == n and (df["status"] == "success").all()
    ids: list[str] = []
    for f in (tmp_path / "s" / "records").glob("*.parquet"):
        ids += pq.read_table(f, columns=["run_id"]).column("run_id").to_pylist()
    assert len(ids) == len(set(ids)) == n
    ends: dict[int, int] = {}
    jobs: set[str] = set()
    for line in (tmp_path / "side.log").read_text().splitlines():
        kind, i, job = line.split()
        if kind == "end":
            ends[int(i)] = ends.get(int(i), 0) + 1
            jobs.add(job)
    assert all(ends[i] == 1 for i in range(n))  # no finished run ran twice
    assert len(jobs) >= 2  # the first job really retired mid-sweep


@metalab.operation(name="slurm_base_exc", version="1")
def slurm_base_exc(params, context):
    i = params["i"]
    _log(context.log, f"{i} {os.environ.get('SLURM_JOB_ID', 'none')}")
    if i == 1:
        sys.exit(3)
    if i == 2:
        sys.exit(0)
    if i == 3:
        raise asyncio.CancelledError("cancelled inside the operation")
    if i == 4:
        raise GeneratorExit("generator exit")
    return {"y": float(i)}


def test_base_exceptions_are_each_runs_failure_on_slurm(tmp_path):
    # sys.exit(), CancelledError... in an operation on a SLURM worker: recorded as that
    # run's failure, the sweep goes on, and nothing is executed twice.
    log = tmp_path / "side.log"
    exp = metalab.Experiment(
        name="slurm_base",
        version="1",
        context=SideChannel(log=str(log), victim=-1, victim_file="", sleep=0.0),
        operation=slurm_base_exc,
        params=metalab.grid(i=list(range(7))),
    )
    ex = _executor()
    res = metalab.run(exp, executor=ex, store=tmp_path / "s", partition_size=3)
    runs = {r.params["i"]: r for r in res}
    assert sorted(runs) == list(range(7))
    assert {i: r.status for i, r in runs.items()} == {
        0: "success",
        1: "failed",
        2: "failed",
        3: "failed",
        4: "failed",
        5: "success",
        6: "success",
    }
    assert runs[1].error["type"] == "SystemExit" and runs[1].error["message"] == "3"
    assert runs[2].error["type"] == "SystemExit" and runs[2].error["message"] == "0"
    assert runs[3].error["type"] == "CancelledError"
    assert runs[4].error["type"] == "GeneratorExit"
    lines = log.read_text().split("\n")[:-1]
    assert sorted(int(line.split()[0]) for line in lines) == list(range(7))  # once each
    assert all(line.split()[1] != "none" for line in lines)  # executed in SLURM jobs
    assert _gone(ex.cluster_kwargs["job_name"])
