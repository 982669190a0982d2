"""Damaged stores: truncated or empty files, a read-only store, a full disk."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

import metalab
from metalab.errors import ArtifactIntegrityError, StoreError
from metalab.store import DamagedFileWarning


def _exp(log: Path, n: int = 40) -> metalab.Experiment:
    @metalab.operation(name="d")
    def op(params, capture):
        with open(log, "a") as f:
            f.write(f"{params['x']}\n")
        capture.metric("y", params["x"])
        capture.metric("curve", params["x"] / 2, step=0)
        capture.artifact("blob", {"x": params["x"], "pad": "." * 200})

    return metalab.Experiment(name="d", operation=op, params=metalab.grid(x=list(range(n))))


def _xs(log: Path) -> list[int]:
    return [int(v) for v in log.read_text().split()] if log.exists() else []


def _fresh(tmp_path: Path) -> tuple[Path, Path, metalab.Experiment]:
    store, log = tmp_path / "s", tmp_path / "exec.log"
    exp = _exp(log)
    metalab.run(exp, store=store, partition_size=10)  # 4 record + 4 metrics files
    log.unlink()
    return store, log, exp


def _held(path: Path) -> set[int]:
    import pyarrow.parquet as pq

    return {int(v.split(":")[1].rstrip("}")) for v in pq.read_table(path)["params"].to_pylist()}


@pytest.mark.parametrize("damage", ["truncated", "zero-byte"])
@pytest.mark.parametrize("folder", ["records", "metrics"])
def test_damaged_parquet_is_quarantined_by_name_and_its_runs_rerun(tmp_path, damage, folder):
    store, log, exp = _fresh(tmp_path)
    victim = sorted((store / folder).glob("*.parquet"))[1]
    held = _held(store / "records" / victim.name)
    assert len(held) == 10
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")

    with pytest.warns(DamagedFileWarning, match=victim.name):
        res = metalab.load_results(store)
        if folder == "records":
            assert len(res) == 30  # never returned as data
        else:
            res[0].metric_series("curve")  # reading the steps finds the damage
    assert not victim.exists()
    assert (store / "quarantine").is_dir() and any(
        p.read_bytes() == (data[: len(data) // 2] if damage == "truncated" else b"")
        for p in (store / "quarantine").iterdir()
    )

    res = metalab.run(exp, store=store, partition_size=10)
    assert sorted(_xs(log)) == sorted(held)  # exactly the runs the file held
    assert sorted(r.params["x"] for r in res) == list(range(40))
    for r in res:
        assert r.metric_series("curve").tolist() == [r.params["x"] / 2]


@pytest.mark.parametrize("damage", ["truncated", "zero-byte"])
def test_damaged_metrics_file_found_by_resume_alone(tmp_path, damage):
    """Nothing reads the steps before the resume: planning itself finds the damage."""
    store, log, exp = _fresh(tmp_path)
    victim = sorted((store / "metrics").glob("*.parquet"))[2]
    held = _held(store / "records" / victim.name)
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    with pytest.warns(DamagedFileWarning, match=victim.name):
        res = metalab.run(exp, store=store, partition_size=10)
    assert sorted(_xs(log)) == sorted(held)  # exactly the runs the damaged file held
    frame = res.metric_frame("curve").compute()  # never a raw pyarrow error
    assert sorted(frame["value"].tolist()) == sorted(x / 2 for x in range(40))


def test_metric_frame_quarantines_a_damaged_file_instead_of_failing(tmp_path):
    store, _, _ = _fresh(tmp_path)
    victim = sorted((store / "metrics").glob("*.parquet"))[0]
    victim.write_bytes(b"")
    with pytest.warns(DamagedFileWarning, match=victim.name):
        frame = metalab.load_results(store).metric_frame("curve").compute()
    assert len(frame) == 30  # the damaged file's runs are not returned as data


@pytest.mark.parametrize("damage", ["truncated", "zero-byte", "missing"])
def test_damaged_artifact_is_reported_quarantined_and_rerun(tmp_path, damage):
    store, log, exp = _fresh(tmp_path)
    run = metalab.load_results(store)[7]
    path = run.artifact_path("blob")
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:10] if damage == "truncated" else b"")
        with pytest.raises(ArtifactIntegrityError, match=str(path)):
            run.artifact("blob")  # never returned as data

    with pytest.warns(DamagedFileWarning, match=str(path)):
        res = metalab.run(exp, store=store)
    assert _xs(log) == [run.params["x"]]
    assert res[run.run_id].artifact("blob")["x"] == run.params["x"]
    if damage != "missing":
        assert [p.name for p in (store / "quarantine").iterdir()] == [f"{run.run_id}-{path.name}"]


def _remount_ro(mnt: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)


def test_read_only_store_fails_early_with_path_and_errno(tmp_path, tmpfs):
    mnt = tmpfs("size=16m")
    log = tmp_path / "exec.log"
    store = mnt / "s"
    metalab.run(_exp(log, 5), store=store)
    log.unlink()
    _remount_ro(mnt)
    with pytest.raises(StoreError) as info:
        metalab.run(_exp(log, 8), store=store)  # 3 new runs to do
    assert info.value.errno == errno.EROFS
    assert str(store) in str(info.value) and "EROFS" in str(info.value)
    assert not log.exists()  # failed before any run was dispatched
    assert len(metalab.load_results(store)) == 5  # reading a read-only store still works
    with pytest.raises(StoreError) as info:
        metalab.run(_exp(log, 5), store=mnt / "new")
    assert info.value.errno == errno.EROFS and str(mnt / "new") in str(info.value)


@pytest.mark.parametrize("fill", [False, True], ids=["tiny-disk", "filled-disk"])
def test_full_disk_fails_early_with_path_and_errno(tmp_path, tmpfs, fill_disk, fill):
    mnt = tmpfs("size=64k" if not fill else "size=4m")
    if fill:  # leave a few KiB free
        fill_disk(mnt)
    log = tmp_path / "exec.log"
    with pytest.raises(StoreError) as info:
        metalab.run(_exp(log, 5), store=mnt / "s")
    assert info.value.errno == errno.ENOSPC
    assert str(mnt / "s") in str(info.value) and "ENOSPC" in str(info.value)
    assert not log.exists()
