"""A full disk mid-sweep: one named StoreError at the first failed write, nothing promised lost.

The store lives on a small real tmpfs (1 MiB and 3 MiB; tests run as root, and skip where
mounting is not allowed). Every run writes a 16 KiB artifact of random bytes, so the
sweep fills the disk. The test then frees space (the tmpfs is grown by a remount) and
resumes: the sweep finishes, each run has one record and its artifact, and the runs
executed before the failure but run again (lost) are at most 3 finished runs per writer
plus the one in flight, counted through a side channel outside the full disk.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

import metalab
from metalab.errors import StoreError

N = 600
#: Finished runs a writer may lose (journal flushed every 4 runs) plus the one in flight.
MAX_LOST_PER_WRITER = 3 + 1


def _exp(log: Path) -> metalab.Experiment:
    @metalab.operation(name="fills")
    def fills(params, capture):
        with open(log, "a") as f:
            f.write(f"{params['x']}\n")
        capture.artifact("blob", os.urandom(16 * 1024))
        capture.metric("y", params["x"])

    return metalab.Experiment(name="disk", operation=fills, params=metalab.grid(x=list(range(N))))


def _executed(log: Path) -> list[int]:
    return [int(v) for v in log.read_text().split()] if log.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("size", ["1m", "3m"])
@pytest.mark.parametrize(
    "make_executor,writers",
    [
        pytest.param(lambda: None, 1, id="default"),
        pytest.param(lambda: metalab.ThreadExecutor(2), 2, id="threads"),
        pytest.param("timeout", 1, id="default-with-timeout"),
        pytest.param(
            lambda: metalab.ProcessExecutor(2), 2, id="processes", marks=pytest.mark.cluster
        ),
    ],
)
def test_full_disk_is_named_and_resume_finishes(tmp_path, tmpfs, size, make_executor, writers):
    mnt = tmpfs(f"size={size}")
    store, log = mnt / "s", tmp_path / "exec.log"
    exp = _exp(log)
    opts = {"partition_size": 100}
    if make_executor == "timeout":  # runs in a child process that writes the artifacts
        make_executor, opts["timeout"] = (lambda: None), 600
    with pytest.raises(StoreError) as info:
        metalab.run(exp, store=store, executor=make_executor(), **opts)
    err = info.value
    assert err.errno == errno.ENOSPC, err
    assert err.path is not None and err.path.startswith(str(store)), err.path
    assert err.path in str(err) and "full" in str(err) and "resume=True" in str(err)
    before = _executed(log)
    assert len(before) < N  # it stopped
    print(f"{size}: stopped after {len(before)} executions: {err}")

    subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)  # free space
    res = metalab.run(exp, store=store, executor=make_executor(), **opts)
    after = _executed(log)[len(before) :]
    assert sorted(r.params["x"] for r in res) == list(range(N))  # one record per run
    assert {r.status for r in res} == {"success"}
    assert sorted(after) == sorted(set(range(N)) - (set(before) - set(after)))
    lost = set(before) & set(after)
    print(f"{size}: {len(lost)} runs executed again after the resume")
    assert len(lost) <= writers * MAX_LOST_PER_WRITER, sorted(lost)
    assert all(len(r.artifact("blob")) == 16 * 1024 for r in res)
