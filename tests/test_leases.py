"""Several drivers on one store share the sweep through leases (issue 15, item 5).

Real processes throughout: ``metalab run`` drivers started together on one store, a
driver SIGKILLed mid-sweep, processes racing for one lease.  The operation appends one
line per execution to a side-channel file (one ``write`` on an ``O_APPEND`` file), so
the tests count how often every run executed.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from faults._faults import finish

import metalab
from metalab.errors import ExperimentError
from metalab.store.leases import LEASE_ENV, Cohort

#: Upper bound on how long a helper waits for an event (not a test threshold).
WAIT_S = 300.0

EXPERIMENT = textwrap.dedent(
    """
    import os, time
    from pathlib import Path
    import metalab

    LOG = os.environ["SIDE_LOG"]
    N = int(os.environ.get("SIDE_N", "200"))
    if os.environ.get("SIDE_GO"):  # a barrier: every driver imports, then all start
        Path(os.environ["SIDE_GO"] + f".ready-{os.getpid()}").touch()
        while not os.path.exists(os.environ["SIDE_GO"]):
            time.sleep(0.005)

    TASK = os.environ.get("SLURM_ARRAY_TASK_ID", "-")

    @metalab.operation(name="side", version="1")
    def side(params, capture):
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"start {params['x']} {os.getpid()} {TASK}\\n".encode())
        time.sleep(float(os.environ.get("SIDE_SLEEP", "0.03")))
        os.write(fd, f"end {params['x']} {os.getpid()} {TASK}\\n".encode())
        os.close(fd)
        capture.metric("y", params["x"] * 2)

    exp = metalab.Experiment(
        name="side", operation=side, params=metalab.grid(x=list(range(N)))
    )
    """
)


def _events(log: Path) -> list[tuple[str, int, int]]:
    """(start|end, x, pid) of every complete line of the side channel."""
    return [(a, x, p) for a, x, p, _task in events_with_task(log)]


def events_with_task(log: Path) -> list[tuple[str, int, int, str]]:
    """(start|end, x, pid, SLURM array task id or "-") of every complete line."""
    try:
        lines = log.read_text().split("\n")[:-1]
    except FileNotFoundError:
        return []
    return [(a, int(x), int(p), t) for a, x, p, t in (ln.split() for ln in lines)]


def _starts(log: Path) -> collections.Counter[int]:
    return collections.Counter(x for what, x, _ in _events(log) if what == "start")


class Drivers:
    """``metalab run`` driver processes on one store, released together by a barrier."""

    def __init__(self, tmp_path: Path, n_runs: int, *, lease_s: float | None = None) -> None:
        self.exp = tmp_path / "exp.py"
        self.exp.write_text(EXPERIMENT)
        self.store = tmp_path / "store"
        self.log = tmp_path / "side.log"
        self.go = tmp_path / "go"
        self.env = {
            **os.environ,
            "SIDE_LOG": str(self.log),
            "SIDE_N": str(n_runs),
            "SIDE_GO": str(self.go),
            "PYTHONUNBUFFERED": "1",
        }
        if lease_s is not None:
            self.env[LEASE_ENV] = str(lease_s)
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "metalab", "run", f"{self.exp}:exp"]
        cmd += ["--store", str(self.store), "--partition-size", "10", "-q", *args]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def release(self) -> None:
        """Wait until every driver imported the experiment, then let them all start."""
        deadline = time.monotonic() + WAIT_S
        while len(list(self.go.parent.glob("go.ready-*"))) < len(self.procs):
            for p in self.procs:
                assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "drivers never got ready"
            time.sleep(0.02)
        self.go.touch()

    def finish(self, proc: subprocess.Popen[str]) -> str:
        code, _, err = finish(proc, WAIT_S)
        assert code == 0, err
        return err

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.communicate()


def _one_record_each(store: Path, n: int) -> list[metalab.Run]:
    res = metalab.load_results(store)
    runs = list(res)
    assert sorted(r.params["x"] for r in runs) == list(range(n))
    assert {r.status for r in runs} == {"success"}
    return runs


def _no_cohort_left(store: Path) -> None:
    assert not [p for p in (store / "leases").iterdir()], "the cohort folder was not retired"


def test_three_cli_drivers_run_every_run_once(tmp_path):
    n = 200
    d = Drivers(tmp_path, n)
    try:
        procs = [d.start() for _ in range(3)]
        d.release()
        for p in procs:
            d.finish(p)
    finally:
        d.kill_all()
    starts = _starts(d.log)
    assert set(starts) == set(range(n))
    assert set(starts.values()) == {1}, {x: c for x, c in starts.items() if c > 1}
    # The drivers shared the work (each claims partitions of 10 runs of 30 ms: 6 s in all).
    pids = {p for what, _, p in _events(d.log) if what == "start"}
    assert len(pids) >= 2
    _one_record_each(d.store, n)
    _no_cohort_left(d.store)


def test_drivers_on_different_executors_share_the_partitions(tmp_path):
    """A Dask cluster driver (leases claimed in its worker processes) and a threads
    driver: the first driver's cuts hold for both, every run executes once."""
    n = 120
    d = Drivers(tmp_path, n)
    try:
        procs = [d.start("--executor", "processes:2"), d.start("--executor", "threads:2")]
        d.release()
        for p in procs:
            d.finish(p)
    finally:
        d.kill_all()
    starts = _starts(d.log)
    assert set(starts) == set(range(n))
    assert set(starts.values()) == {1}, {x: c for x, c in starts.items() if c > 1}
    _one_record_each(d.store, n)
    _no_cohort_left(d.store)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_driver_partitions_are_taken_over(tmp_path, sig):
    """A driver SIGKILLed mid-sweep: a waiting driver takes its partitions over once its
    lease expires; the runs it finished are kept, not run again.  A driver stopped by
    SIGTERM (what SLURM sends first) lets its partition go unfinished: its next claimer
    keeps the runs it recorded too."""
    n = 120
    d = Drivers(tmp_path, n, lease_s=3)
    try:
        victim = d.start()
        survivor = d.start("--wait")
        d.release()
        deadline = time.monotonic() + WAIT_S
        while sum(1 for w, _, p in _events(d.log) if w == "end" and p == victim.pid) < 15:
            assert victim.poll() is None and time.monotonic() < deadline, victim.communicate()
            time.sleep(0.01)
        os.killpg(victim.pid, sig)
        victim.communicate()
        d.finish(survivor)
    finally:
        d.kill_all()
    events = _events(d.log)
    ended_by_victim = {x for w, x, p in events if w == "end" and p == victim.pid}
    started_by_victim = {x for w, x, p in events if w == "start" and p == victim.pid}
    starts = _starts(d.log)
    assert set(starts) == set(range(n))
    # Nothing the victim finished ran again; only its run in flight at the kill may have.
    assert all(starts[x] == 1 for x in ended_by_victim)
    in_flight = started_by_victim - ended_by_victim
    assert len(in_flight) <= 1
    assert {x for x, c in starts.items() if c > 1} <= in_flight
    runs = _one_record_each(d.store, n)
    # The victim's finished runs keep its records (folded from its journal).
    assert len({r.record["sweep"] for r in runs}) == 2
    _no_cohort_left(d.store)


_CLAIMER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from metalab.store.leases import Cohort

    root, go, hold = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    cohort = Cohort.join(root, "k" * 32, lambda: [0, 5, 10], float(sys.argv[4]), 10)
    Path(go + f".ready-{os.getpid()}").touch()
    while not os.path.exists(go):
        time.sleep(0.001)
    claim = cohort.claim(0, f"sweep-{os.getpid()}")
    print(json.dumps(claim is not None), flush=True)
    if claim is not None:
        time.sleep(hold)  # renewed meanwhile by the background thread
    """
)


def _claimers(
    tmp_path: Path, n: int, hold: float, ttl: float = 2.0
) -> tuple[list[subprocess.Popen[str]], Path]:
    script = tmp_path / "claimer.py"
    script.write_text(_CLAIMER)
    root, go = tmp_path / "store", tmp_path / "go"
    root.mkdir(exist_ok=True)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(root), str(go), str(hold), str(ttl)],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for _ in range(n)
    ]
    deadline = time.monotonic() + WAIT_S
    while len(list(tmp_path.glob("go.ready-*"))) < n:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    go.touch()
    return procs, root


def test_one_of_racing_processes_gets_a_lease_and_keeps_it(tmp_path):
    # The holder holds until killed: had it ended on its own, a claim racing its exit
    # would rightly take a dead process's lease.  A 5 s lease renewed every 1 s keeps a
    # busy machine's scheduling delays far inside the lease time.
    procs, root = _claimers(tmp_path, 6, hold=600.0, ttl=5.0)
    try:
        answers = []
        for p in procs:
            assert p.stdout is not None
            answers.append(json.loads(p.stdout.readline()))
        assert answers.count(True) == 1
        holder = procs[answers.index(True)]
        cohort = Cohort.join(root, "k" * 32, lambda: [0, 10], 5.0, 10)
        assert cohort.bounds == (0, 5, 10)  # the first driver's cuts, not ours
        # While its holder lives the lease is renewed: never taken over three lease times.
        end = time.monotonic() + 15.0
        while time.monotonic() < end:
            assert holder.poll() is None
            assert cohort.claim(0, "thief") is None
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.communicate()


def test_a_dead_holders_lease_is_taken_over(tmp_path):
    procs, root = _claimers(tmp_path, 1, hold=600.0)
    (holder,) = procs
    try:
        assert holder.stdout is not None and json.loads(holder.stdout.readline()) is True
        cohort = Cohort.join(root, "k" * 32, lambda: [0, 10], 2.0, 10)
        assert cohort.claim(0, "taker") is None
        os.killpg(holder.pid, signal.SIGKILL)
        holder.communicate()
        deadline = time.monotonic() + WAIT_S
        claim = None
        while claim is None:  # free once not renewed for 2 s
            assert time.monotonic() < deadline
            time.sleep(0.1)
            claim = cohort.claim(0, "taker")
        assert claim.previous == (f"sweep-{holder.pid}",)
        assert cohort.claim(0, "another") is None  # the taker holds it now
        claim.release(done=True)
        assert cohort.claim(0, "another") is None  # done: never run again
        assert os.path.exists(cohort.path(0, "done"))
        assert not os.path.exists(cohort.path(0, "lease"))
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.communicate()


def test_a_lease_of_another_host_expires_by_its_age(tmp_path):
    """A holder on another host cannot be asked whether it lives: its lease is taken
    only once not renewed for the lease time (its mtime is the renewal)."""
    cohort = Cohort.join(tmp_path, "k" * 32, lambda: [0, 10], 30.0, 10)
    lease = cohort.path(0, "lease")
    with open(lease, "w") as f:
        json.dump({"host": "elsewhere", "pid": 1, "sweep": "far", "holders": ["farther"]}, f)
    assert cohort.state(0)[0] == "held"
    assert cohort.claim(0, "near") is None
    old = time.time() - 31
    os.utime(lease, (old, old))  # as if its holder stopped renewing 31 s ago
    assert cohort.state(0)[0] == "expired"
    claim = cohort.claim(0, "near")
    assert claim is not None and claim.previous == ("farther", "far")
    assert json.loads(Path(lease).read_text())["sweep"] == "near"
    assert not [p for p in Path(cohort.folder).iterdir() if p.name.startswith(".tmp-")]
    claim.release(done=False)
    # Let go unfinished: a released lease, expired at once, that names who ran it before.
    assert cohort.state(0)[0] == "expired"
    again = cohort.claim(0, "next")
    assert again is not None and again.previous == ("farther", "far", "near")
    again.release(done=True)
    assert cohort.state(0)[0] == "done"
    assert not os.path.exists(lease)


def test_a_lease_on_a_full_disk_never_looks_held(tmp_path, tmpfs, fill_disk):
    """A full disk: creating a lease raises StoreError naming it and leaves no empty
    lease (which would read as one being written, held); letting a held partition go
    removes its lease when the released one cannot be written, so a resume can claim it."""
    from metalab.errors import StoreError

    root = tmpfs("size=512k")
    cohort = Cohort.join(root, "k" * 32, lambda: [0, 5, 10], 30.0, 10)
    held = cohort.claim(0, "first")
    assert held is not None
    ballast = fill_disk(root)
    with pytest.raises(StoreError) as info:
        cohort.claim(1, "first")
    assert info.value.path == cohort.path(1, "lease")
    assert not os.path.lexists(cohort.path(1, "lease"))
    assert cohort.state(1)[0] == "free"
    held.release(done=False)
    assert not os.path.lexists(cohort.path(0, "lease"))
    assert cohort.state(0)[0] == "free"
    ballast.unlink()
    again = cohort.claim(0, "resume")
    assert again is not None
    again.release(done=True)


@metalab.operation(name="count", version="1")
def count_op(params, capture):
    with open(os.environ["COUNT_LOG"], "a") as f:
        f.write(f"{params['x']}\n")
    capture.metric("y", params["x"])


def _count_exp() -> metalab.Experiment:
    return metalab.Experiment(name="count", operation=count_op, params=metalab.grid(x=range(30)))


def test_one_driver_leaves_no_cohort_and_runs_again_without_resume(tmp_path, monkeypatch):
    log = tmp_path / "count.log"
    monkeypatch.setenv("COUNT_LOG", str(log))
    store = tmp_path / "store"
    metalab.run(_count_exp(), store=store, partition_size=7)
    _no_cohort_left(store)
    metalab.run(_count_exp(), store=store, partition_size=7)  # resumed: nothing to do
    assert len(log.read_text().split()) == 30
    res = metalab.run(_count_exp(), store=store, resume=False, partition_size=7)
    assert len(log.read_text().split()) == 60
    assert res.counts()["success"] == 30
    _no_cohort_left(store)


def test_a_foreign_table_is_set_aside_not_followed(tmp_path, monkeypatch):
    log = tmp_path / "count.log"
    monkeypatch.setenv("COUNT_LOG", str(log))
    store = tmp_path / "store"
    metalab.run(_count_exp(), store=store, resume=False, partition_size=7)
    # A cohort table whose cuts do not fit the plan (hand-made, or another metalab).
    from metalab.sweep.cohort import cohort_key

    folder = store / "leases" / cohort_key(_count_exp())
    folder.mkdir(parents=True)
    (folder / "table.json").write_text(json.dumps({"bounds": [0, 99]}))
    res = metalab.run(_count_exp(), store=store, resume=False, partition_size=7)
    assert res.counts()["success"] == 30
    assert len(log.read_text().split()) == 60
    _no_cohort_left(store)


def test_a_bad_lease_time_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(LEASE_ENV, "soon")
    with pytest.raises(ExperimentError, match=f"{LEASE_ENV}='soon'.*seconds"):
        metalab.run(_count_exp(), store=tmp_path / "store")
