"""Warm executors: ``with executor:`` keeps one cluster (or thread pool) for every sweep of
the block and closes it at the block's end; real clusters, real processes and threads."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import psutil
import pytest

import metalab
from metalab import ExecutorConfigError, ProcessExecutor, ThreadExecutor


def _log(path: str, line: str) -> None:
    with open(path, "a") as f:  # one small O_APPEND write per line: safe across processes
        f.write(line + "\n")


def _where() -> str:
    """``<pid> <thread id> <scheduler address>`` of the calling run."""
    try:
        from distributed import get_worker

        address = get_worker().scheduler.address
    except ValueError:  # not on a distributed worker
        address = "none"
    return f"{os.getpid()} {threading.get_ident()} {address}"


@metalab.operation(name="where", version="1")
def where(params, context):
    """Logs where each run ran; the run ``context['victim']`` kills its worker once."""
    if params["i"] == context["victim"] and not os.path.exists(context["victim_file"]):
        Path(context["victim_file"]).write_text(str(os.getpid()))
        os._exit(1)
    _log(context["log"], _where())
    time.sleep(context["sleep"])
    return {"i": params["i"]}


def _exp(tmp_path: Path, tag: str, n: int, *, victim: int = -1, sleep: float = 0.0):
    ctx = {
        "log": str(tmp_path / f"{tag}.log"),
        "victim": victim,
        "victim_file": str(tmp_path / f"{tag}.victim"),
        "sleep": sleep,
    }
    return metalab.Experiment(
        name=f"where_{tag}",
        version="1",
        context=ctx,
        operation=where,
        params=metalab.grid(i=list(range(n))),
    )


def _seen(tmp_path: Path, tag: str) -> list[tuple[int, int, str]]:
    rows = (tmp_path / f"{tag}.log").read_text().split("\n")
    return [(int(p), int(t), a) for p, t, a in (r.split() for r in rows if r)]


def _alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.add(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _gone_soon(pids: set[int], limit_s: float = 60.0) -> bool:
    end = time.monotonic() + limit_s
    while _alive(pids) and time.monotonic() < end:
        time.sleep(0.05)
    return not _alive(pids)


@pytest.mark.cluster
def test_sweeps_in_a_with_block_share_one_cluster_closed_at_its_end(tmp_path):
    exe = ProcessExecutor(max_workers=2)
    with exe:
        assert exe.is_open
        first = metalab.run(
            _exp(tmp_path, "a", 40, sleep=0.01), executor=exe, store=tmp_path / "a", progress=False
        )
        second = metalab.run(
            _exp(tmp_path, "b", 40, sleep=0.01), executor=exe, store=tmp_path / "b", progress=False
        )
        assert len(first.to_pandas()) == len(second.to_pandas()) == 40
        a, b = _seen(tmp_path, "a"), _seen(tmp_path, "b")
        # The same scheduler and the same worker processes served both sweeps.
        assert len({s for _, _, s in a + b}) == 1 and a[0][2] != "none"
        workers = {p for p, _, _ in a}
        assert {p for p, _, _ in b} <= workers and os.getpid() not in workers
        assert _alive(workers) == workers  # still up between and after the sweeps
    assert not exe.is_open
    assert _gone_soon(workers)  # the block's end stopped the worker processes
    # Without a block, every run() starts and closes its own cluster, as before.
    metalab.run(_exp(tmp_path, "c", 4), executor=exe, store=tmp_path / "c", progress=False)
    c = _seen(tmp_path, "c")
    assert {s for _, _, s in c}.isdisjoint({s for _, _, s in a})
    assert _gone_soon({p for p, _, _ in c})


@pytest.mark.cluster
def test_a_worker_death_in_one_sweep_does_not_poison_the_next(tmp_path):
    with ProcessExecutor(max_workers=2) as exe:
        first = metalab.run(
            _exp(tmp_path, "a", 20, victim=5),
            executor=exe,
            store=tmp_path / "a",
            partition_size=5,
            progress=False,
        )
        df = first.to_pandas()
        assert len(df) == 20 and (df["status"] == "success").all()  # run 5 ran again
        killed = int((tmp_path / "a.victim").read_text())
        second = metalab.run(
            _exp(tmp_path, "b", 20, sleep=0.01), executor=exe, store=tmp_path / "b", progress=False
        )
        df = second.to_pandas()
        assert len(df) == 20 and (df["status"] == "success").all()
        b = _seen(tmp_path, "b")
        assert killed not in {p for p, _, _ in b}  # its replacement worked instead
        assert len({s for _, _, s in _seen(tmp_path, "a") + b}) == 1  # same scheduler
        workers = {p for p, _, _ in b}
    assert _gone_soon(workers)


@pytest.mark.cluster
def test_the_block_closes_its_cluster_when_a_sweep_fails(tmp_path):
    with pytest.raises(ZeroDivisionError), ProcessExecutor(max_workers=1) as exe:
        metalab.run(_exp(tmp_path, "a", 3), executor=exe, store=tmp_path / "a", progress=False)
        workers = {p for p, _, _ in _seen(tmp_path, "a")}
        1 / 0  # noqa: B018 - the user's code fails inside the block
    assert not exe.is_open
    assert _gone_soon(workers)


def _pool_threads() -> set[int]:
    return {t.ident for t in threading.enumerate() if t.name.startswith("metalab-thread")}


def test_thread_executor_keeps_its_threads_for_the_block(tmp_path):
    before = _pool_threads()
    with ThreadExecutor(max_workers=2) as exe:
        metalab.run(_exp(tmp_path, "a", 30), executor=exe, store=tmp_path / "a", progress=False)
        metalab.run(_exp(tmp_path, "b", 30), executor=exe, store=tmp_path / "b", progress=False)
        a = {t for _, t, _ in _seen(tmp_path, "a")}
        b = {t for _, t, _ in _seen(tmp_path, "b")}
        inside = _pool_threads() - before
        assert a | b <= inside and len(inside) <= 2  # one pool of two threads for both
    assert _pool_threads() == before  # shut down at the block's end
    metalab.run(_exp(tmp_path, "c", 30), executor=exe, store=tmp_path / "c", progress=False)
    assert _pool_threads() == before  # without a block: threads for one sweep only


def test_an_open_executor_cannot_be_entered_twice():
    exe = ThreadExecutor(max_workers=1)
    with exe, pytest.raises(ExecutorConfigError, match="already open"):
        with exe:
            pass
    assert not exe.is_open


@metalab.operation(name="which_job", version="1")
def which_job(params, context):
    _log(context["log"], os.environ.get("SLURM_JOB_ID", "none"))
    return {"i": params["i"]}


@pytest.mark.slurm
def test_two_sweeps_in_one_slurm_block_use_the_same_jobs(tmp_path):
    import subprocess
    import uuid

    name = f"mltest-{uuid.uuid4().hex[:6]}"
    exe = metalab.SlurmExecutor(
        cores=1,
        memory="1GB",
        walltime="00:10:00",
        interface="lo",
        worker_timeout_s=90,
        job_name=name,
    )

    def sweep(tag: str) -> set[str]:
        exp = metalab.Experiment(
            name=f"jobs_{tag}",
            version="1",
            context={"log": str(tmp_path / f"{tag}.log")},
            operation=which_job,
            params=metalab.grid(i=list(range(30))),
        )
        df = metalab.run(exp, executor=exe, store=tmp_path / tag, progress=False).to_pandas()
        assert len(df) == 30 and (df["status"] == "success").all()
        return set((tmp_path / f"{tag}.log").read_text().split())

    def queued() -> str:
        cmd = ["squeue", "-h", "-n", name, "-o", "%i %T"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()

    with exe:
        first, second = sweep("a"), sweep("b")
        assert first == second and len(first) == 1 and "none" not in first
        assert next(iter(first)) in queued()  # the job is still there between sweeps
    end = time.monotonic() + 60
    while any(s.split()[1] not in ("COMPLETING", "CANCELLED") for s in queued().splitlines()):
        assert time.monotonic() < end, f"the block's end left jobs queued: {queued()}"
        time.sleep(0.2)
