"""Executors on real Dask schedulers: one code path, clusters started and closed by metalab
(never the user's), context shipped once per worker, per-run progress, worker loss
(SIGKILL), resources, worker lifetime and bounded waits."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest

import metalab
from metalab import DaskExecutor, LocalExecutor, ProcessExecutor, ThreadExecutor
from metalab.sweep.progress import JournalPoller

# -- helpers ---------------------------------------------------------------------------


def _log(path: str, line: str) -> None:
    with open(path, "a") as f:  # one small O_APPEND write per line: safe across processes
        f.write(line + "\n")


def _wait_for(pred, what: str, limit_s: float = 60.0) -> None:
    """Poll ``pred`` (bounded, so a broken sweep fails instead of hanging the test)."""
    end = time.monotonic() + limit_s
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def _raw_run_ids(store: Path) -> list[str]:
    """run_id of every record row on disk (Parquet files plus live journals)."""
    ids: list[str] = []
    for f in sorted((store / "records").glob("*.parquet")):
        ids += pq.read_table(f, columns=["run_id"]).column("run_id").to_pylist()
    assert not list((store / "journal").glob("*.jsonl")), "journals left after the sweep"
    return ids


def _new_children(before: set[int]) -> list[psutil.Process]:
    alive = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


# -- operations (module level: workers unpickle them) -----------------------------------


@metalab.operation(name="square", version="1")
def square(params, seeds, capture):
    capture.metric("y", params["x"] ** 2)
    capture.metric("u", float(seeds.numpy().random()))


@metalab.operation(name="logged", version="1")
def logged(params, context):
    """Logs start/end per run; the run ``context['victim']`` waits to be killed once."""
    i = params["i"]
    _log(context["log"], f"start {i} {os.getpid()}")
    if i == context["victim"] and not os.path.exists(context["victim_file"]):
        with open(context["victim_file"] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(context["victim_file"] + ".tmp", context["victim_file"])
        time.sleep(120)  # killed here
    if i == context["fail"]:
        raise ValueError("this run fails")
    if i in context["block"]:
        end = time.monotonic() + 120
        while not os.path.exists(context["release"]) and time.monotonic() < end:
            time.sleep(0.01)
    time.sleep(context["sleep"])
    _log(context["log"], f"end {i} {os.getpid()}")
    return {"i": i}


def _logged_exp(
    tmp_path: Path,
    n: int,
    *,
    victim: int = -1,
    block=(),
    sleep: float = 0.03,
    name: str = "logged",
    fail: int = -1,
) -> metalab.Experiment:
    ctx = {
        "log": str(tmp_path / "side.log"),
        "victim": victim,
        "fail": fail,
        "victim_file": str(tmp_path / "victim"),
        "block": list(block),
        "release": str(tmp_path / "release"),
        "sleep": sleep,
    }
    return metalab.Experiment(
        name=name,
        version="1",
        context=ctx,
        operation=logged,
        params=metalab.grid(i=list(range(n))),
        seeds=metalab.seeds(base=3),
    )


def _side_log(tmp_path: Path) -> tuple[dict[int, int], dict[int, int], dict[int, set[int]]]:
    starts: dict[int, int] = {}
    ends: dict[int, int] = {}
    end_pids: dict[int, set[int]] = {}
    for line in (tmp_path / "side.log").read_text().splitlines():
        kind, i, pid = line.split()
        d = starts if kind == "start" else ends
        d[int(i)] = d.get(int(i), 0) + 1
        if kind == "end":
            end_pids.setdefault(int(pid), set()).add(int(i))
    return starts, ends, end_pids


# -- one code path ----------------------------------------------------------------------


@pytest.mark.cluster
def test_every_executor_gives_the_same_records(tmp_path, client, capsys):
    exp = metalab.Experiment(
        name="sq",
        version="1",
        context={},
        operation=square,
        params=metalab.grid(x=list(range(30))),
        seeds=metalab.seeds(base=7, replicates=2),
    )
    frames = {}
    executors = {
        "local": LocalExecutor(),
        "threads": ThreadExecutor(max_workers=2),
        "processes": ProcessExecutor(max_workers=2),
        "dask": DaskExecutor(client),
    }
    for name, ex in executors.items():
        res = metalab.run(exp, executor=ex, store=tmp_path / name)
        df = res.to_pandas(full=True).sort_values("run_id").reset_index(drop=True)
        assert (df["status"] == "success").all() and len(df) == 60
        frames[name] = df
        if name in ("processes", "dask"):
            # workers wrote the records straight into the store, not the driver
            assert (df["pid"] != os.getpid()).all()
            assert df["worker"].str.startswith("tcp://").all()
    ref = frames["local"]
    for name, df in frames.items():
        assert df["run_id"].tolist() == ref["run_id"].tolist(), name
        np.testing.assert_array_equal(df["u"], ref["u"])
    assert "Dask dashboard at http" in capsys.readouterr().err


# -- who closes what --------------------------------------------------------------------


@pytest.mark.cluster
def test_user_client_and_cluster_are_never_closed(tmp_path, local_cluster, client):
    exp = _logged_exp(tmp_path, 8, sleep=0)
    metalab.run(exp, executor=DaskExecutor(client), store=tmp_path / "a")
    metalab.run(exp, executor=DaskExecutor(local_cluster), store=tmp_path / "b")
    metalab.run(exp, executor=DaskExecutor(local_cluster.scheduler_address), store=tmp_path / "c")
    # also after a sweep that fails: no worker offers the resources it needs
    gpu_exp = metalab.Experiment(
        name="g",
        version="1",
        context={},
        params=metalab.grid(x=[1, 2]),
        operation=metalab.operation(name="g", resources={"GPU": 1})(lambda params: None),
    )
    with pytest.raises(metalab.ExecutorError, match="resources"):
        metalab.run(
            gpu_exp, executor=DaskExecutor(client, worker_timeout_s=1), store=tmp_path / "d"
        )
    assert client.status == "running"
    assert local_cluster.status.name == "running"
    assert client.submit(lambda v: v + 1, 1).result() == 2
    assert len(client.scheduler_info()["workers"]) == 2


@pytest.mark.cluster
def test_metalab_closes_its_cluster_after_success_error_and_ctrl_c(tmp_path, local_cluster):
    before = _children()  # includes the suite's shared LocalCluster
    exp = _logged_exp(tmp_path, 6, sleep=0)
    metalab.run(exp, executor=ProcessExecutor(max_workers=2), store=tmp_path / "ok")
    assert _new_children(before) == []

    gpu_exp = metalab.Experiment(
        name="g",
        version="1",
        context={},
        params=metalab.grid(x=[1, 2]),
        operation=metalab.operation(name="g", resources={"GPU": 1})(lambda params: None),
    )
    with pytest.raises(metalab.ExecutorError, match="GPU"):
        metalab.run(
            gpu_exp,
            executor=ProcessExecutor(max_workers=1, worker_timeout_s=1),
            store=tmp_path / "err",
        )
    assert _new_children(before) == []

    side = tmp_path / "slow"
    side.mkdir()
    slow = _logged_exp(side, 200, sleep=0.05, name="slow")
    main = threading.main_thread().ident

    def interrupt():
        _wait_for(
            lambda: (
                (side / "side.log").exists() and (side / "side.log").read_text().count("end") >= 4
            ),
            "first runs",
            limit_s=300,  # the cluster starts first: slow on a loaded machine
        )
        signal.pthread_kill(main, signal.SIGINT)

    t = threading.Thread(target=interrupt, daemon=True)
    t.start()
    with pytest.raises(metalab.RunInterrupted):
        metalab.run(slow, executor=ProcessExecutor(max_workers=2), store=tmp_path / "int")
    t.join()
    assert _new_children(before) == []
    done = metalab.load_results(tmp_path / "int")
    assert 4 <= len(done.to_pandas()) < 200  # finished runs were kept


# -- context shipped once per worker ----------------------------------------------------


def _rebuild_big(data, log):
    _log(log, f"unpickled {os.getpid()}")
    return BigContext(data=data, log=log)


@metalab.context_spec
class BigContext:
    data: np.ndarray
    log: str

    def __reduce__(self):
        return (_rebuild_big, (self.data, self.log))


@metalab.operation(name="uses_big", version="1")
def uses_big(params, context):
    _log(context.log + ".runs", f"{os.getpid()}")
    return {"s": float(context.data[params["i"]])}


@pytest.mark.cluster
def test_large_context_is_unpickled_once_per_worker_not_per_task(tmp_path, client):
    log = str(tmp_path / "unpickle.log")
    ctx = BigContext(data=np.arange(2_000_000, dtype=np.float64), log=log)  # 16 MB
    exp = metalab.Experiment(
        name="big",
        version="1",
        context=ctx,
        operation=uses_big,
        params=metalab.grid(i=list(range(200))),
    )
    res = metalab.run(
        exp, executor=DaskExecutor(client), store=tmp_path / "s", partition_size=5
    )  # 40 partition tasks
    df = res.to_pandas()
    assert len(df) == 200 and df["s"].sum() == sum(range(200))
    run_pids = {int(x) for x in Path(log + ".runs").read_text().split()}
    unpickled = [int(line.split()[1]) for line in Path(log).read_text().splitlines()]
    assert len(run_pids) >= 1
    # exactly once in each worker process that ran runs, never once per task
    assert sorted(unpickled) == sorted(run_pids)
    assert os.getpid() not in unpickled
    # the payload file is removed with the sweep
    assert not list((tmp_path / "s" / "sweeps").glob("*.payload"))


# -- per-run progress -------------------------------------------------------------------


@pytest.mark.cluster
def test_journal_poller_counts_runs_one_by_one_on_a_cluster(tmp_path, client):
    # One partition of 10 runs: run 1 fails, run 4 blocks until released.  Once run 4
    # has started, runs 0-3 are on disk (a journal flushes every 4 runs), so the count
    # is exact at that moment: no timing involved.
    exp = _logged_exp(tmp_path, 10, block=(4,), fail=1, sleep=0.03)
    store = tmp_path / "s"
    out: dict = {}

    def sweep():
        try:
            out["res"] = metalab.run(
                exp, executor=DaskExecutor(client), store=store, partition_size=10
            )
        except BaseException as exc:  # pragma: no cover - reported below
            out["err"] = exc

    t = threading.Thread(target=sweep)
    t.start()
    try:
        side = tmp_path / "side.log"
        _wait_for(lambda: side.exists() and "start 4 " in side.read_text(), "run 4 to start", 240)
        (sweep_info,) = metalab.load_results(store).provenance
        poller = JournalPoller(store / "journal", sweep_info["sweep"])
        # The partition task is still running, yet each finished run is counted.
        assert poller.poll() == (3, 1)
        assert not out  # the sweep is still running
    finally:
        (tmp_path / "release").touch()
        t.join(timeout=240)
    assert "err" not in out, out.get("err")
    df = out["res"].to_pandas()
    assert len(df) == 10 and (df["status"] == "success").sum() == 9
    assert poller.poll() == (3, 1)  # journals gone: what was counted stays counted


# -- worker loss ------------------------------------------------------------------------


@pytest.mark.cluster
def test_sigkill_of_a_worker_costs_only_its_run_in_flight(tmp_path):
    n, victim = 40, 15  # 4 partitions of 10; run 15 is in the middle of the 2nd one
    exp = _logged_exp(tmp_path, n, victim=victim, sleep=0.03)

    def killer():
        vf = tmp_path / "victim"
        _wait_for(vf.exists, "the victim run", limit_s=300)  # after the cluster started
        os.kill(int(vf.read_text()), signal.SIGKILL)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    res = metalab.run(
        exp, executor=ProcessExecutor(max_workers=2), store=tmp_path / "s", partition_size=10
    )
    t.join()
    df = res.to_pandas()
    assert len(df) == n and (df["status"] == "success").all()
    # the retried partition counts the runs its killed attempt finished (5 of them)
    assert res.provenance[-1]["success"] == n
    ids = _raw_run_ids(tmp_path / "s")
    assert len(ids) == len(set(ids)) == n  # exactly one record per run
    starts, ends, end_pids = _side_log(tmp_path)
    assert all(ends[i] == 1 for i in range(n))  # no finished run ran again
    assert starts[victim] == 2  # only the run in flight was repeated
    assert sum(starts.values()) == n + 1
    killed = int((tmp_path / "victim").read_text())
    assert {10, 11, 12, 13, 14} <= end_pids.get(killed, set())  # finished before the kill


# -- resources --------------------------------------------------------------------------


@metalab.operation(name="on_gpu", version="1", resources={"GPU": 1})
def on_gpu(params):
    time.sleep(0.01)
    return {"x": params["x"]}


@pytest.fixture
def gpu_cluster():
    """A LocalCluster with one plain worker and one worker offering GPU=1."""
    from distributed import Client, LocalCluster, Nanny

    cluster = LocalCluster(
        n_workers=1, threads_per_worker=1, dashboard_address=":0", silence_logs=logging.CRITICAL
    )
    cluster.worker_spec["gpu"] = {"cls": Nanny, "options": {"nthreads": 1, "resources": {"GPU": 1}}}
    cluster.scale(2)
    with Client(cluster, set_as_default=False) as c:
        c.wait_for_workers(2, timeout=60)
        yield c
    cluster.close()


@pytest.mark.cluster
def test_resources_send_runs_only_to_workers_that_offer_them(tmp_path, gpu_cluster):
    workers = gpu_cluster.scheduler_info()["workers"]
    gpu = [a for a, w in workers.items() if w.get("resources", {}).get("GPU")]
    assert len(gpu) == 1 and len(workers) == 2
    exp = metalab.Experiment(
        name="gpu",
        version="1",
        context={},
        operation=on_gpu,
        params=metalab.grid(x=list(range(40))),
    )
    res = metalab.run(
        exp, executor=DaskExecutor(gpu_cluster), store=tmp_path / "s", partition_size=2
    )  # 20 tasks, two idle-able workers
    df = res.to_pandas(full=True)
    assert len(df) == 40
    assert set(df["worker"]) == set(gpu)


def test_resources_are_ignored_in_process(tmp_path):
    exp = metalab.Experiment(
        name="gpu", version="1", context={}, operation=on_gpu, params=metalab.grid(x=[1, 2])
    )
    assert len(metalab.run(exp, store=tmp_path / "s").to_pandas()) == 2


# -- the executor interface -------------------------------------------------------------


def test_a_new_executor_only_implements_session(tmp_path):
    from metalab.executors import Executor, Session

    entered: list[str] = []

    class Synchronous(Executor):
        @contextlib.contextmanager
        def session(self):
            from dask.local import get_sync

            entered.append("in")
            yield Session(n_workers=1, get=get_sync)
            entered.append("out")

    exp = _logged_exp(tmp_path, 3, sleep=0)
    res = metalab.run(exp, executor=Synchronous(), store=tmp_path / "s")
    assert [r.status for r in res] == ["success"] * 3 and entered == ["in", "out"]
    assert res.provenance[-1]["executor"] == "Synchronous()"

    class Incomplete(Executor):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]


@pytest.mark.slurm
def test_slurm_executor_shows_the_queue_state_of_its_jobs(tmp_path):
    import subprocess

    job = subprocess.run(
        ["sbatch", "--parsable", "-J", "mltest-state", "-o", os.devnull, "--wrap", "sleep 60"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    try:
        state = metalab.SlurmExecutor().queue_state([job])
    finally:
        subprocess.run(["scancel", job], check=False, timeout=30)
    assert state is not None and state.startswith("squeue (job state reason): ")
    assert f"{job} " in state  # "<id> <STATE> <reason>"
    assert metalab.PBSExecutor().queue_state([job]) is None  # PBS declares no such command


# -- arguments --------------------------------------------------------------------------


def test_executor_argument_errors():
    with pytest.raises(metalab.ExecutorError, match="not both"):
        metalab.SlurmExecutor(jobs=2, adapt=(1, 4))
    with pytest.raises(metalab.ExecutorError, match="adapt"):
        metalab.SlurmExecutor(adapt=(3, 1))
    with pytest.raises(metalab.ExecutorError, match="jobs"):
        metalab.SlurmExecutor(jobs=0)
    with pytest.raises(metalab.ExecutorError, match="worker_lifetime"):
        metalab.SlurmExecutor(lifetime_stagger="5m")
    with pytest.raises(metalab.ExperimentError, match="executor"):
        metalab.run(_logged_exp(Path("."), 1), executor="slurm")


def test_jobqueue_options_fall_back_to_dask_config(tmp_path):
    import dask

    conf = {
        "jobqueue.slurm.cores": 8,
        "jobqueue.slurm.memory": "32GB",
        "jobqueue.slurm.account": "proj42",
        "jobqueue.slurm.walltime": "04:00:00",
    }
    with dask.config.set(conf):
        opts = metalab.SlurmExecutor(cores=None, memory=None).cluster_options()
        assert opts["cores"] == 8 and opts["memory"] == "32GB" and opts["processes"] == 8
        # keywords win over the config
        opts = metalab.SlurmExecutor(cores=2, memory="4GB", processes=1).cluster_options()
        assert opts["cores"] == 2 and opts["memory"] == "4GB" and opts["processes"] == 1
    ex = metalab.SlurmExecutor(
        worker_lifetime="55m", resources={"GPU": 1}, job_extra_directives=["--gres=gpu:1"]
    )
    args = ex.cluster_options()["worker_extra_args"]
    assert args[:4] == ["--lifetime", "55m", "--lifetime-stagger", "330s"]
    assert args[4:] == ["--resources", "GPU=1"]


def test_pbs_job_script_has_the_requested_resources(tmp_path):
    ex = metalab.PBSExecutor(
        cores=4,
        memory="16GB",
        walltime="02:00:00",
        queue="short",
        account="proj42",
        worker_lifetime="100m",
        interface="lo",
    )
    script = ex.job_script()
    assert "#PBS -q short" in script and "#PBS -A proj42" in script
    assert "walltime=02:00:00" in script
    assert "--lifetime 100m --lifetime-stagger 600s" in script
