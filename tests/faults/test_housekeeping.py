"""Housekeeping keeps history and cleans what killed writers leave (issue 11, item 8).

* Compaction keeps every attempt of every run (the failed-attempt history promised in
  docs/design.md); only the same attempt seen twice is merged. Readers still show one
  current record per run.
* Temp files in ``artifacts/<run_id>/`` older than the threshold are deleted; younger
  ones (a writer may still be busy) stay.
* ``sweeps/<sweep>.payload`` of a ``ProcessExecutor`` sweep whose driver was SIGKILLed is
  deleted by the next ``run()``; the payload of a driver that still runs is kept.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _faults import records, run_driver, start_driver, wait_for_executions

import metalab
from metalab.store import Store
from metalab.store.housekeeping import drop_repeated_rows
from metalab.store.journal import HOST
from metalab.store.processes import process_alive

OLD = 1_000_000_000.0  # 2001


def _raw_rows(store: Path) -> pa.Table:
    return pa.concat_tables(
        [pq.read_table(f) for f in sorted((store / "records").glob("*.parquet"))],
        promote_options="permissive",
    )


def _flaky(flag: Path, n: int) -> metalab.Experiment:
    @metalab.operation(name="flaky", version="1")
    def op(params, capture):
        if flag.exists():
            raise RuntimeError("the flag is up")
        capture.metric("y", params["x"])

    return metalab.Experiment(name="flaky", operation=op, params=metalab.grid(x=list(range(n))))


def test_compaction_keeps_every_failed_attempt(tmp_path):
    store, flag = tmp_path / "s", tmp_path / "flag"
    exp = _flaky(flag, 12)
    flag.touch()
    metalab.run(exp, store=store, partition_size=1)  # 12 files of failed attempts
    flag.unlink()
    metalab.run(exp, store=store, partition_size=1)  # 12 more: 24 >= 16, compaction runs
    assert len(list((store / "records").glob("*.parquet"))) < 16  # it did run
    raw = _raw_rows(store).to_pylist()
    attempts = sorted((r["params"], r["attempt"], r["status"]) for r in raw)
    assert len(raw) == 24  # both attempts of every run, nothing dropped, nothing doubled
    assert {(a, s) for _, a, s in attempts} == {(1, "failed"), (2, "success")}
    res = metalab.load_results(store)  # readers still keep the current attempt
    assert len(res) == 12 and {(r.status, r.attempt) for r in res} == {("success", 2)}


def test_compaction_merges_the_same_attempt_seen_twice(tmp_path):
    store, flag = tmp_path / "s", tmp_path / "flag"
    exp = _flaky(flag, 6)
    flag.touch()
    metalab.run(exp, store=store, partition_size=3)
    flag.unlink()
    metalab.run(exp, store=store, partition_size=3)
    files = sorted((store / "records").glob("*.parquet"))
    for f in files:  # as if two compactions had merged overlapping inputs
        shutil.copy(f, f.with_name("copy-" + f.name))
    assert _raw_rows(store).num_rows == 24
    Store.open(store).compact(at_files=2)
    assert _raw_rows(store).num_rows == 12  # 6 runs x 2 attempts
    assert drop_repeated_rows(_raw_rows(store)).num_rows == 12


def test_stale_temp_files_in_artifact_folders_are_cleaned(tmp_path):
    @metalab.operation(name="arts", version="1")
    def op(params, capture):
        capture.artifact("blob", {"x": params["x"]})

    exp = metalab.Experiment(name="arts", operation=op, params=metalab.grid(x=[0, 1]))
    store = tmp_path / "s"
    res = metalab.run(exp, store=store)
    folder = res[0].artifact_path("blob").parent
    stale, fresh = folder / ".tmp-0123abcd-blob.json", folder / ".tmp-4567ef01-blob.json"
    stale.write_text("left by a killed run")
    fresh.write_text("a writer may still be busy")
    os.utime(stale, (OLD, OLD))
    metalab.run(exp, store=store)  # resume: executes nothing, cleans
    assert not stale.exists() and fresh.exists()
    assert metalab.load_results(store)[0].artifact("blob") in ({"x": 0}, {"x": 1})


def _payloads(store: Path) -> list[str]:
    return sorted(p.name for p in (store / "sweeps").glob("*.payload"))


@pytest.mark.slow
def test_payload_of_a_killed_process_executor_sweep_is_cleaned(tmp_path):
    store, log = tmp_path / "store", tmp_path / "exec.log"
    args = ["--stop", "40", "--sleep", "0.05", "--executor", "process", "--partition-size", "5"]
    proc = start_driver(store, log, *args)
    wait_for_executions(log, 4, proc)
    payloads = _payloads(store)
    assert len(payloads) == 1
    assert Store.open(store).clean_temp_files() == 0  # its driver runs: kept
    assert _payloads(store) == payloads
    os.killpg(proc.pid, signal.SIGKILL)  # driver and workers die together
    proc.communicate()
    Store.open(store).clean_temp_files()
    assert _payloads(store) == []  # its driver is gone
    rc, _out, err = run_driver(store, log, "--stop", "40")
    assert rc == 0, err
    assert sorted(r["x"] for r in records(store)) == list(range(40))
    assert _payloads(store) == []


def _sweep(store: Path, name: str, **info: object) -> Path:
    (store / "sweeps" / f"{name}.json").write_text(json.dumps({"sweep": name, **info}))
    payload = store / "sweeps" / f"{name}.payload"
    payload.write_bytes(b"pickled context")
    return payload


def test_payload_kept_exactly_while_its_driver_may_run(tmp_path):
    st = Store.open(tmp_path / "s", create=True)
    me = {"hostname": HOST, "pid": os.getpid()}
    now = time.time()
    ended = _sweep(st.root, "ended", started=now, ended=now, provenance=me)
    running = _sweep(st.root, "running", started=now, provenance=me)
    reused = _sweep(st.root, "reused", started=OLD, provenance=me)  # pid reused since 2001
    remote = _sweep(st.root, "remote", started=now, provenance={"hostname": "elsewhere", "pid": 1})
    orphan_old = st.root / "sweeps" / "orphan-old.payload"
    orphan_new = st.root / "sweeps" / "orphan-new.payload"
    for p in (orphan_old, orphan_new):
        p.write_bytes(b"no sweep file")
    os.utime(orphan_old, (OLD, OLD))
    st.clean_temp_files()
    assert not ended.exists() and not reused.exists() and not orphan_old.exists()
    assert running.exists() and remote.exists() and orphan_new.exists()


def test_process_alive():
    assert process_alive(os.getpid())
    assert not process_alive(os.getpid(), started=OLD)  # started after: a reused pid
    assert not process_alive(0) and not process_alive(-1)
