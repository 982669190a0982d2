"""``sbatch --array`` of ``metalab run`` on one store, on the real local SLURM (issue 15,
tests 6(c) and 6(d); ``../shared/scripts/start-slurm.sh`` starts it).

The array tasks are plain ``metalab run`` processes started by slurmd on this machine;
the store and the side-channel file live in the test's tmp folder, which every task
sees (as a shared file system would on a cluster).  The operation appends a line per
execution to the side channel, so the tests count how often every run executed.
"""

from __future__ import annotations

import collections
import os
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from test_leases import EXPERIMENT, events_with_task

import metalab
from metalab.store.leases import LEASE_ENV

pytestmark = pytest.mark.slurm

#: Upper bound on how long the test waits for the array (not a test threshold): the
#: machine's two cores are shared with other SLURM tests, whose jobs queue before ours.
WAIT_S = 900.0
N_RUNS = 400


def _submit(tmp_path: Path, *args: str, lease_s: float | None = None) -> str:
    """Submit ``sbatch --array=0-3`` of ``metalab run`` on one store; returns the job id."""
    exp = tmp_path / "exp.py"
    exp.write_text(EXPERIMENT)
    run = [sys.executable, "-m", "metalab", "run", f"{exp}:exp", "--store", "runs/exp"]
    run += ["--partition-size", "10", "-q", *args]
    env = {
        **os.environ,
        "SIDE_LOG": str(tmp_path / "side.log"),
        "SIDE_N": str(N_RUNS),
        "SIDE_SLEEP": "0.02",
    }
    env.pop("SIDE_GO", None)
    if lease_s is not None:
        env[LEASE_ENV] = str(lease_s)
    cmd = [
        "sbatch",
        "--parsable",
        "--array=0-3",
        f"--job-name=mlarray-{uuid.uuid4().hex[:6]}",
        "--cpus-per-task=1",
        "--mem=400M",
        f"--chdir={tmp_path}",
        f"--output={tmp_path}/slurm-%A_%a.out",
        "--wrap",
        shlex.join(run),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=True)
    return res.stdout.strip().split(";")[0]


def _queued(job: str) -> list[str]:
    res = subprocess.run(
        ["squeue", "-h", "-j", job, "-o", "%i %T"], capture_output=True, text=True, timeout=60
    )
    return [ln for ln in res.stdout.splitlines() if ln.strip()]


def _wait_gone(job: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while _queued(job):
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job], timeout=60)
            raise AssertionError(f"array {job} still queued after {WAIT_S} s")
        time.sleep(0.5)


def _outputs(tmp_path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(tmp_path.glob("slurm-*.out"))}


def _check_store(tmp_path: Path) -> list[metalab.Run]:
    runs = list(metalab.load_results(tmp_path / "runs" / "exp"))
    assert sorted(r.params["x"] for r in runs) == list(range(N_RUNS))  # one record each
    assert {r.status for r in runs} == {"success"}
    assert not [p for p in (tmp_path / "runs" / "exp" / "leases").iterdir()]
    return runs


def test_array_of_four_runs_a_400_run_sweep_once(tmp_path):
    job = _submit(tmp_path)
    try:
        _wait_gone(job)
    finally:
        subprocess.run(["scancel", job], timeout=60)
    outs = _outputs(tmp_path)
    assert len(outs) == 4, outs  # every array task ran
    for name, text in outs.items():
        assert "error" not in text.lower() and f"{N_RUNS} runs" in text, (name, text)
    events = events_with_task(tmp_path / "side.log")
    starts = collections.Counter(x for what, x, _, _ in events if what == "start")
    assert set(starts) == set(range(N_RUNS))
    assert set(starts.values()) == {1}, {x: c for x, c in starts.items() if c > 1}
    _check_store(tmp_path)


def test_killed_array_task_partitions_are_taken_over(tmp_path):
    job = _submit(tmp_path, "--wait", lease_s=5)
    log = tmp_path / "side.log"
    try:
        deadline = time.monotonic() + WAIT_S
        victim = None
        while victim is None:  # the first task to finish 15 runs
            done = collections.Counter(t for w, _, _, t in events_with_task(log) if w == "end")
            victim = next((t for t, c in done.items() if c >= 15), None)
            assert time.monotonic() < deadline, "no array task ran 15 runs"
            time.sleep(0.05)
        # SIGKILL ends the task's batch shell; slurmstepd then ends the task's other
        # processes with SIGTERM (SIGKILL after KillWait): the driver either stops
        # gracefully, letting its partition go unfinished, or dies holding it.  Either
        # way the runs it recorded must be kept.
        subprocess.run(
            ["scancel", "--signal=KILL", "--full", f"{job}_{victim}"], check=True, timeout=60
        )
        _wait_gone(job)
    finally:
        subprocess.run(["scancel", job], timeout=60)
    events = events_with_task(log)
    by_victim = [(w, x) for w, x, _, t in events if t == victim]
    ended = {x for w, x in by_victim if w == "end"}
    in_flight = {x for w, x in by_victim if w == "start"} - ended
    starts = collections.Counter(x for what, x, _, _ in events if what == "start")
    assert set(starts) == set(range(N_RUNS))
    assert all(starts[x] == 1 for x in ended)  # nothing the victim finished ran again
    assert {x for x, c in starts.items() if c > 1} <= in_flight
    assert len(in_flight) <= 1
    runs = _check_store(tmp_path)
    # The victim's finished runs keep the records it wrote (folded from its journal).
    victim_sweeps = {r.record["sweep"] for r in runs if r.params["x"] in ended}
    assert victim_sweeps and len(victim_sweeps) == 1
    outs = _outputs(tmp_path)
    survivors = {n: t for n, t in outs.items() if not n.endswith(f"_{victim}.out")}
    for name, text in survivors.items():
        assert f"{N_RUNS} runs ({N_RUNS} success)" in text, (name, text)
