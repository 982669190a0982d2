"""Checkpoints on the real local SLURM (../shared/scripts/start-slurm.sh).

(a) The job running a checkpointed run is SIGKILLed (``scancel --signal=KILL --full``):
a replacement job continues the run from its checkpoint.  (b) The job gets SIGTERM
(``scancel --signal=TERM --full``, what SLURM sends at walltime, on preemption and on
a plain scancel): ``checkpoint_due()`` turns true, the run checkpoints and is recorded
``requeued``, and a replacement job continues it.  In both, the final records and
stepped metrics equal an uninterrupted sweep's bit for bit.  (c) The batch script of
docs/hpc.md (``metalab run`` in-process) requeues its run on the early warning.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import metalab
from metalab import SlurmExecutor

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]

EPOCHS = 12
WAIT_S = 600.0  # a busy machine may keep a job pending for minutes


@metalab.context_spec
class Plan:
    log: str
    pause_at: int


def _log(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@metalab.operation(name="slurm_ckpt", version="1")
def slurm_ckpt(params, seeds, capture, context):
    state = capture.restore() or {"epoch": 0, "w": np.zeros(6)}
    rng = seeds.numpy()
    job = os.environ.get("SLURM_JOB_ID", "none")
    for epoch in range(state["epoch"], EPOCHS):
        _log(context.log, f"{params['x']} {epoch} {job}")
        state["w"] += rng.normal(size=6)
        state["epoch"] = epoch + 1
        capture.metric("loss", float(np.abs(state["w"]).sum()), step=epoch)
        if capture.checkpoint_due():
            capture.checkpoint(state)
            return
        if epoch % 4 == 3:
            capture.checkpoint(state)
        once = Path(context.log + ".job")
        if params["x"] == 0 and epoch == context.pause_at and not once.exists():
            Path(context.log + ".tmp").write_text(f"{job} {os.getpid()}")
            os.replace(context.log + ".tmp", once)  # the test now signals this job
            end = time.monotonic() + WAIT_S
            while time.monotonic() < end:
                time.sleep(0.05)
                if capture.checkpoint_due():  # SIGTERM: save this epoch and stop
                    capture.checkpoint(state)
                    return
    capture.metric("final", float(state["w"].sum()))


def _exp(log: Path, pause_at: int) -> metalab.Experiment:
    return metalab.Experiment(
        name="slurm_ckpt",
        operation=slurm_ckpt,
        context=Plan(log=str(log), pause_at=pause_at),
        params=metalab.grid(x=[0, 1]),
    )


def _final(store: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    res = metalab.load_results(store)
    table = res.to_pandas().sort_values("x")[["x", "status", "loss", "final"]]
    series = res.series("loss").sort_values(["x", "step"])[["x", "step", "value"]]
    return table.reset_index(drop=True), series.reset_index(drop=True)


def _run_signalled(tmp_path: Path, scancel_args: list[str]) -> tuple[Path, list[str]]:
    """Run the sweep on one SLURM job; signal the job once x=0 pauses at epoch 9.

    With ``--signal=KILL`` the worker process is also SIGKILLed by its pid: this local
    SLURM (proctrack/linuxproc) leaves a job's processes running after its batch
    shell is killed, which a real node's cgroup would not.
    """
    log, store = tmp_path / "side.log", tmp_path / "s"
    signalled: list[str] = []

    def signaller() -> None:
        marker = Path(f"{log}.job")
        end = time.monotonic() + WAIT_S
        while not marker.exists() and time.monotonic() < end:
            time.sleep(0.1)
        if marker.exists():
            job, pid = marker.read_text().split()
            subprocess.run(["scancel", *scancel_args, job], check=True, timeout=60)
            if "--signal=KILL" in scancel_args:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            signalled.append(job)

    t = threading.Thread(target=signaller, daemon=True)
    t.start()
    ex = SlurmExecutor(
        cores=1,
        memory="1GB",
        walltime="00:15:00",
        interface="lo",
        jobs=1,
        worker_timeout_s=WAIT_S,
        job_name=f"mlckpt-{uuid.uuid4().hex[:6]}",
    )
    res = metalab.run(_exp(log, pause_at=9), executor=ex, store=store, partition_size=1)
    t.join(30)
    assert signalled, "the run never paused for the signal"
    assert res.counts() == {"success": 2, "failed": 0, "pending": 0}
    return store, signalled


def _reference(tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    metalab.run(_exp(tmp_path / "ref.log", pause_at=-1), store=tmp_path / "ref")
    return _final(tmp_path / "ref")


def _epochs(log: Path) -> tuple[collections.Counter[tuple[int, int]], dict[int, set[str]]]:
    seen: collections.Counter[tuple[int, int]] = collections.Counter()
    jobs: dict[int, set[str]] = collections.defaultdict(set)
    for line in log.read_text().splitlines():
        x, epoch, job = line.split()
        seen[(int(x), int(epoch))] += 1
        jobs[int(x)].add(job)
    return seen, jobs


def _same(got, ref) -> None:
    pd.testing.assert_frame_equal(got[0], ref[0])  # exact: no tolerance
    pd.testing.assert_frame_equal(got[1], ref[1])


def test_killed_job_continues_from_the_checkpoint_on_a_replacement_job(tmp_path):
    ref = _reference(tmp_path)
    store, signalled = _run_signalled(tmp_path, ["--signal=KILL", "--full"])
    _same(_final(store), ref)
    seen, jobs = _epochs(tmp_path / "side.log")
    assert sorted(k for k, n in seen.items() if n > 1) == [(0, 8), (0, 9)]  # since epoch 7
    assert signalled[0] in jobs[0] and len(jobs[0]) == 2  # continued on another job


def test_sigterm_requeues_the_run_and_a_replacement_job_finishes_it(tmp_path):
    ref = _reference(tmp_path)
    store, signalled = _run_signalled(tmp_path, ["--signal=TERM", "--full"])
    _same(_final(store), ref)
    seen, jobs = _epochs(tmp_path / "side.log")
    assert set(seen.values()) == {1} and len(seen) == 2 * EPOCHS  # nothing ran twice
    assert signalled[0] in jobs[0] and len(jobs[0]) == 2
    rows = pq.read_table(store / "records").to_pandas()  # every record, superseded ones too
    assert sorted(rows["status"]) == ["requeued", "success", "success"]


EXPERIMENT = """
import time, numpy as np, metalab
@metalab.operation(name="train", version="1")
def train(params, seeds, capture):
    state = capture.restore() or {"epoch": 0, "w": np.zeros(4)}
    rng = seeds.numpy()
    for epoch in range(state["epoch"], 30):
        time.sleep(0.3)
        state["w"] += rng.normal(size=4)
        state["epoch"] = epoch + 1
        capture.metric("loss", float(np.abs(state["w"]).sum()), step=epoch)
        if capture.checkpoint_due():
            capture.checkpoint(state)
            return
exp = metalab.Experiment(name="sb", operation=train, params=metalab.grid(x=[0, 1]))
"""

#: The batch script of docs/hpc.md (``exec``, so the batch shell is metalab).
JOB = """#!/bin/bash
#SBATCH --time=00:10:00
#SBATCH --signal=B:TERM@120
#SBATCH -o {dir}/job-%j.out
cd {dir}
exec {python} -m metalab run experiments.py:exp --store {dir}/store
"""


def _sbatch_and_wait(tmp_path: Path, *, warn: bool) -> None:
    job = subprocess.run(
        ["sbatch", "--parsable", str(tmp_path / "job.sh")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    end = time.monotonic() + WAIT_S
    if warn:  # SIGTERM to the batch shell, as --signal=B:TERM@120 sends it
        while not list((tmp_path / "store" / "journal").glob("*.jsonl")):
            assert time.monotonic() < end, "the sweep did not start"
            time.sleep(0.2)
        time.sleep(2)  # a few epochs into the first run
        subprocess.run(["scancel", "--signal=TERM", "--batch", job], check=True, timeout=60)
    while subprocess.run(
        ["squeue", "-h", "-j", job], capture_output=True, text=True, timeout=60
    ).stdout.strip():
        assert time.monotonic() < end, f"job {job} did not end"
        time.sleep(0.5)


def test_the_documented_batch_script_checkpoints_on_the_warning_signal(tmp_path):
    (tmp_path / "experiments.py").write_text(EXPERIMENT)
    (tmp_path / "job.sh").write_text(JOB.format(dir=tmp_path, python=sys.executable))
    _sbatch_and_wait(tmp_path, warn=True)
    counts = metalab.load_results(tmp_path / "store").counts()
    assert counts["requeued"] == 1 and counts["failed"] == 0 and counts["success"] == 0
    _sbatch_and_wait(tmp_path, warn=False)  # resubmitted: the sweep continues
    res = metalab.load_results(tmp_path / "store")
    assert res.counts() == {"success": 2, "failed": 0, "pending": 0}
    steps = res.series("loss").groupby("run_id")["step"]
    assert (steps.count() == 30).all() and (steps.nunique() == 30).all()
