"""Metadata that tells the truth: a manifest that follows the experiment, counts from the
store, and sweeps whose driver is gone shown as interrupted (issue 13, item 2)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

import metalab
from metalab.cli import main
from metalab.store import Store
from metalab.store.checksum import seal_json
from metalab.store.journal import HOST
from metalab.store.manifest import HISTORY, manifest_text, note_definition
from metalab.store.sweep_files import STALE_S, Heartbeat, sweep_state


@metalab.operation(name="square", version="1")
def square(params, capture):
    capture.metric("y", params["x"] ** 2)


def _exp(xs: list[int]) -> metalab.Experiment:
    return metalab.Experiment(name="grow", operation=square, params=metalab.grid(x=xs))


def test_growing_a_grid_updates_manifest_show_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "grow"
    metalab.run(_exp([1, 2]), store=store)
    metalab.run(_exp([1, 2, 3, 4]), store=store)  # the documented recipe: resume adds 2

    manifest = Store.open(store).read_manifest()
    assert manifest["runs"] == 4
    assert manifest["params"]["axes"] == {"x": [1, 2, 3, 4]}
    (entry,) = manifest[HISTORY]  # one definition, seen by two sweeps
    assert entry["sweeps"] == 2 and entry["planned"] == 4
    assert entry["first_sweep"] != entry["latest_sweep"]

    assert main(["show", str(store)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert not any(ln.split()[:2] == ["runs", "2"] for ln in lines)
    assert [ln for ln in lines if ln.startswith("runs ")] == [
        "runs                 4 (4 success) of the current definition"
    ]
    assert "planned 2, to run 2, skipped 0; records now in the store: 2 success" in out
    assert "planned 4, to run 2, skipped 2; records now in the store: 2 success" in out

    pytest.importorskip("matplotlib")
    from metalab.report import build_report

    page = build_report(store)
    assert "plans 2 runs" not in page and "more runs that the store does not hold" not in page


def test_a_manifest_without_history_still_reads_and_gains_one(tmp_path: Path) -> None:
    store = tmp_path / "old"
    metalab.run(_exp([1, 2]), store=store)
    path = store / "manifest.json"
    old = json.loads(path.read_text())
    for key in (HISTORY, "updated", "metalab_crc32"):
        old.pop(key, None)
    path.write_text(manifest_text(seal_json(old)))  # as written before the history existed
    assert Store.open(store).read_manifest()["runs"] == 2
    assert len(metalab.load_results(store)) == 2

    metalab.run(_exp([1, 2, 3]), store=store)
    history = Store.open(store).read_manifest()[HISTORY]
    assert len(history) == 1 and history[0]["sweeps"] == 2 and history[0]["planned"] == 3


def test_concurrent_updates_lose_no_sweep(tmp_path: Path) -> None:
    metalab.run(_exp([1]), store=tmp_path / "c")
    st = Store.open(tmp_path / "c")
    base = st.read_manifest()
    now = {k: base[k] for k in ("experiment_version", "operation_version", "context_fingerprint")}

    def note(worker: int) -> None:
        for i in range(5):
            v = {**now, "operation_version": f"v{worker}"}
            note_definition(st.layout, v, sweep=f"s{worker}-{i}", started=time.time(), planned=i)

    threads = [threading.Thread(target=note, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = st.read_manifest()[HISTORY]
    by_version = {e["operation_version"]: e for e in history}
    assert set(by_version) == {"1", "v0", "v1", "v2", "v3"}
    assert all(by_version[f"v{w}"]["sweeps"] == 5 for w in range(4))
    assert all(by_version[f"v{w}"]["latest_sweep"] == f"s{w}-4" for w in range(4))


def _write_sweep(store: Path, name: str, **info: object) -> Path:
    st = Store.open(store)
    st.write_sweep(name, {"sweep": name, "planned": 3, "to_run": 3, **info})
    return st.layout.sweeps / f"{name}.json"


def test_remote_sweep_is_interrupted_when_its_heartbeat_stops(tmp_path: Path) -> None:
    store = tmp_path / "r"
    metalab.run(_exp([1]), store=store)
    path = _write_sweep(store, "remote", host="elsewhere.example", pid=1, started=time.time())
    state = {s["sweep"]: s["state"] for s in Store.open(store).read_sweeps()}
    assert state["remote"] == "running"
    old = time.time() - STALE_S - 60
    os.utime(path, (old, old))
    state = {s["sweep"]: s["state"] for s in Store.open(store).read_sweeps()}
    assert state["remote"] == "interrupted"
    assert next(iter(state.values())) == "finished"


def test_reused_pid_is_not_a_live_driver(tmp_path: Path) -> None:
    info = {"host": HOST, "pid": os.getpid(), "started": time.time()}
    assert sweep_state(info, time.time()) == "running"
    # This process started long after that sweep: its pid was reused.
    assert sweep_state({**info, "started": 1_000_000.0}, time.time()) == "interrupted"
    assert sweep_state({**info, "ended": 1.0, "status": "incomplete"}, None) == "incomplete"


def test_heartbeat_touches_the_sweep_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text("{}")
    os.utime(path, (1.0, 1.0))
    beat = Heartbeat(path, interval=0.05).start()
    try:
        deadline = time.monotonic() + 60
        while path.stat().st_mtime < 2.0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        beat.stop()
    assert path.stat().st_mtime > 2.0
