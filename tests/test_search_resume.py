"""A search whose driver is SIGKILLed resumes to exactly n_trials, no run twice (issue 14)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import metalab

optuna = pytest.importorskip("optuna")

N_TRIALS = 16
SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import metalab

    store, side, batch, where = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

    @metalab.operation(name="slow", version="1")
    def slow(params, seeds, capture):
        time.sleep(0.05)
        value = (params["x"] - 0.2) ** 2 + params["k"] + 0.01 * seeds.spawn_key[0]
        fd = os.open(side, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, (capture.run_id + "\\n").encode())  # the side channel: one line per execution
        os.close(fd)
        capture.metric("loss", value)

    space = {"x": metalab.uniform(-1, 1), "k": metalab.randint(0, 3)}
    params = metalab.optimize(space, metric="loss", n_trials=N_TRIALS, seed=5,
                              batch_size=batch or None)
    exp = metalab.Experiment(name="r", version="1", operation=slow, params=params,
                             seeds=metalab.seeds(base=0, replicates=2))
    executor = metalab.ProcessExecutor(max_workers=2) if where == "process" else None
    metalab.run(exp, store=store, executor=executor)
    """
).replace("N_TRIALS", str(N_TRIALS))


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


@pytest.mark.parametrize(
    "batch, where",
    [(1, "inline"), (3, "inline"), (0, "process")],  # 0: one trial in flight per worker
)
def test_sigkilled_search_resumes_exactly(tmp_path, batch, where):
    """SIGKILL of the driver mid-search; on a cluster its workers die with it (mid-run)."""
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    store, side = tmp_path / "store", tmp_path / "side.txt"
    args = [sys.executable, str(script), str(store), str(side), str(batch), where]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while len(_lines(side)) < 12 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len(_lines(side))
    assert killed_at < 2 * N_TRIALS  # it really was killed mid-search
    recorded = {r.run_id for r in metalab.load_results(store)} if store.exists() else set()
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr

    executed = _lines(side)
    assert len(set(executed)) == 2 * N_TRIALS
    # Nothing recorded ran again; a run can only run twice if the kill came after its
    # execution and before its journal line reached the OS (the runs in flight).
    again = [r for r in set(executed) if executed.count(r) > 1]
    assert not set(again) & recorded
    assert len(executed) - 2 * N_TRIALS <= 2 * max(batch, 2)  # trials in flight x replicates
    result = metalab.load_results(store)
    trials = result.trials()
    assert sorted(trials["trial"]) == list(range(N_TRIALS))
    assert set(trials["n_runs"]) == {2} and len(result) == 2 * N_TRIALS
    assert not list((store / "journal").glob("*.jsonl"))  # every journal folded into Parquet
    ledger = [
        json.loads(x) for x in (store / "search" / "trials.jsonl").read_text().split("\n") if x
    ]
    assert [e["trial"] for e in ledger] == list(range(N_TRIALS))
    if batch == 1:  # the same configurations as Optuna driven by hand, uninterrupted
        from metalab.search.space import to_config, to_optuna

        space = {"x": metalab.uniform(-1, 1), "k": metalab.randint(0, 3)}
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=5))
        expected = []
        for _ in range(N_TRIALS):
            t = study.ask(to_optuna(space))
            cfg = to_config(space, t.params)
            study.tell(t, (cfg["x"] - 0.2) ** 2 + cfg["k"] + 0.005)
            expected.append(cfg)
        assert [e["params"] for e in ledger] == expected


def test_interrupted_trial_keeps_its_finished_runs(tmp_path):
    """Ctrl-C in a trial's second replicate: the trials run by the driver share one
    journal, and the final fold must not delete it with the first replicate's record in
    it; the resume runs only what never finished, exactly once each."""
    side = tmp_path / "side.txt"
    stop_at = {"n": 8}  # the 8th execution: trial 3's second replicate

    @metalab.operation(name="cut", version="1")
    def cut(params, capture):
        with side.open("a") as f:
            f.write(capture.run_id + "\n")
        stop_at["n"] -= 1
        if stop_at["n"] == 0:
            raise KeyboardInterrupt
        capture.metric("loss", params["x"] ** 2)

    def exp() -> metalab.Experiment:
        params = metalab.optimize(
            {"x": metalab.uniform(-1, 1)}, metric="loss", n_trials=6, seed=1, batch_size=1
        )
        return metalab.Experiment(
            name="cut", operation=cut, params=params, seeds=metalab.seeds(base=0, replicates=2)
        )

    store = tmp_path / "store"
    with pytest.raises(metalab.RunInterrupted):
        metalab.run(exp(), store=store)
    first = _lines(side)
    assert len(first) == 8
    kept = {r.run_id for r in metalab.load_results(store)}
    assert first[7] not in kept and set(first[:7]) <= kept  # trial 3's first replicate too
    metalab.run(exp(), store=store)
    executed = _lines(side)
    again = executed[8:]
    assert first[7] in again and not set(first[:7]) & set(again)  # only the unfinished one
    assert len(executed) == 12 + 1  # 12 runs, the interrupted one twice
    assert len(metalab.load_results(store)) == 12
