"""SIGKILL of the driver mid-sweep, then resume: exactly N records, nothing run twice."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from _faults import (
    MAX_LOST_PER_PROCESS,
    counts,
    executions,
    records,
    run_driver,
    start_driver,
    wait_for_executions,
)

N = 60


def _kill_then_resume(tmp_path: Path, executor: str, group: bool) -> None:
    store, log = tmp_path / "store", tmp_path / "exec.log"
    proc = start_driver(
        store,
        log,
        "--stop",
        str(N),
        "--sleep",
        "0.03",
        "--executor",
        executor,
        "--partition-size",
        "10",
    )
    wait_for_executions(log, 20, proc)
    if group:  # the driver and its LocalCluster die together (a killed batch job)
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    before = counts(log)
    n_before = len(executions(log))

    # What was recorded before the kill stays readable (journals of a dead process count).
    kept = {r["x"] for r in records(store)}
    assert kept <= set(before)
    lost = set(before) - kept
    assert len(lost) <= MAX_LOST_PER_PROCESS * (2 if executor == "process" else 1)

    rc, _out, err = run_driver(store, log, "--stop", str(N), "--executor", executor)
    assert rc == 0, err
    after = counts(log) - before
    recs = records(store)
    assert sorted(r["x"] for r in recs) == list(range(N))  # exactly N, one per run id
    assert len({r["run_id"] for r in recs}) == N
    assert {r["status"] for r in recs} == {"success"}
    assert not kept & set(after), "a run recorded before the kill was executed again"
    # Only unrecorded runs ran again (a driver-only kill leaves the LocalCluster's workers
    # to finish their run in flight, which may then be recorded too), and every run ran.
    assert set(after) <= set(range(N)) - kept
    assert set(after) | set(before) == set(range(N))
    assert all(v == 1 for v in after.values())
    assert not list((store / "journal").glob("*.jsonl"))  # the dead journals were folded

    # Resume of a finished sweep executes nothing and changes nothing.
    n_done = len(executions(log))
    rc, _out, err = run_driver(store, log, "--stop", str(N), "--executor", executor)
    assert rc == 0, err
    assert len(executions(log)) == n_done
    assert sorted(r["x"] for r in records(store)) == list(range(N))
    assert n_before < n_done


@pytest.mark.slow
def test_sigkill_driver_in_process_then_resume(tmp_path):
    _kill_then_resume(tmp_path, "local", group=False)


@pytest.mark.slow
def test_sigkill_driver_thread_executor_then_resume(tmp_path):
    _kill_then_resume(tmp_path, "thread", group=False)


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.parametrize("group", [True, False], ids=["with-cluster", "driver-only"])
def test_sigkill_driver_process_executor_then_resume(tmp_path, group):
    _kill_then_resume(tmp_path, "process", group=group)


@pytest.mark.parametrize("content", [b"", b'{"v":3,"sweep":"s"'])
def test_a_journal_killed_before_its_header_is_removed_once_its_writer_is_dead(tmp_path, content):
    """A driver killed between creating a journal and writing its header leaves an empty
    (or torn) file: it holds no run, and recovery removes it once the writer named in
    the file's name is dead; a live writer's, or another host's, stays."""
    import subprocess
    import sys

    import metalab
    from metalab.store import Store
    from metalab.store.journal import HOST_TAG

    @metalab.operation(name="one", version="1")
    def one(params):
        return None

    store = tmp_path / "store"
    metalab.run(
        metalab.Experiment(name="k", operation=one, params=metalab.grid(x=[1])), store=store
    )
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    folder = store / "journal"
    names = {
        "dead": f"20260101T000000-aaaaaaaa-000003-0123456789-h{HOST_TAG}p{int(dead.stdout)}.jsonl",
        "alive": f"20260101T000000-aaaaaaaa-000004-0123456789-h{HOST_TAG}p{os.getpid()}.jsonl",
        "elsewhere": f"20260101T000000-aaaaaaaa-000005-0123456789-h{'0' * 8}p1.jsonl",
        "old name": "20260101T000000-aaaaaaaa-000006-0123456789.jsonl",
    }
    for name in names.values():
        (folder / name).write_bytes(content)
    assert Store.open(store).recover_journals() == 0
    left = sorted(p.name for p in folder.iterdir())
    assert left == sorted(n for k, n in names.items() if k != "dead")
