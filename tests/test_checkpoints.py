"""Checkpoints (issue 15, items 1-4): storing, restoring, damage, generators, requeue."""

from __future__ import annotations

import os
import signal
import warnings

import numpy as np
import pandas as pd
import pytest

import metalab
from metalab.capture import Capture, attach_seeds
from metalab.errors import (
    CaptureError,
    DamagedFileWarning,
    UnsafePickleError,
    UnsupportedArtifactError,
)
from metalab.seeds import SeedBundle

EPOCHS = 20


def _cap(tmp_path, run_id="r1", seeds=None):
    cap = Capture(run_id, str(tmp_path))
    if seeds is not None:
        attach_seeds(cap, seeds)
    return cap


def _files(tmp_path, run_id="r1"):
    folder = tmp_path / "checkpoints" / run_id
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# -- storing and restoring -------------------------------------------------------------


@pytest.mark.parametrize(
    "state",
    [
        {"epoch": 3, "w": np.arange(5.0), "nested": [1, {"b": b"\x00\x01"}], "name": "x"},
        np.arange(12, dtype=np.int32).reshape(3, 4),
        {"epoch": 3, "loss": [0.5, float("nan")]},
        pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
        b"raw bytes",
        "text\r\nkept",
    ],
    ids=["mixed", "array", "json", "frame", "bytes", "text"],
)
def test_restore_returns_what_was_checkpointed(tmp_path, state):
    _cap(tmp_path).checkpoint(state)
    got = _cap(tmp_path).restore()
    if isinstance(state, dict) and "w" in state:
        np.testing.assert_array_equal(got["w"], state["w"])
        assert got["nested"] == [1, {"b": b"\x00\x01"}] and got["epoch"] == 3
    elif isinstance(state, np.ndarray):
        np.testing.assert_array_equal(got, state)
        assert got.dtype == state.dtype
    elif isinstance(state, pd.DataFrame):
        pd.testing.assert_frame_equal(got, state)
    elif isinstance(state, dict):
        assert got["epoch"] == 3 and got["loss"][0] == 0.5 and np.isnan(got["loss"][1])
    else:
        assert got == state


def test_no_checkpoint_restores_none_and_a_bare_capture_cannot_checkpoint(tmp_path):
    assert _cap(tmp_path).restore() is None
    with pytest.raises(CaptureError, match="not attached to a store"):
        Capture("r1", None).checkpoint({"a": 1})


def test_keep_the_latest_k(tmp_path):
    cap = _cap(tmp_path)
    for i in range(5):
        cap.checkpoint({"i": i}, keep=2)
    assert len(_files(tmp_path)) == 4  # two checkpoints: state + index entry each
    assert _cap(tmp_path).restore() == {"i": 4}
    cap.checkpoint({"i": 5})  # keep=1 from now on
    assert len(_files(tmp_path)) == 2


@pytest.mark.parametrize("keep", [0, -1, 1.5, True])
def test_bad_keep_is_refused(tmp_path, keep):
    with pytest.raises(CaptureError, match="keep"):
        _cap(tmp_path).checkpoint({"a": 1}, keep=keep)


def test_unsafe_states_need_pickle_and_pickles_need_allow_pickle(tmp_path):
    class Model:
        pass

    with pytest.raises(UnsupportedArtifactError, match="format='pickle'"):
        _cap(tmp_path).checkpoint({"model": Model()})
    with pytest.raises(UnsupportedArtifactError, match="format='pickle'"):
        _cap(tmp_path).checkpoint(np.array([Model()], dtype=object))
    _cap(tmp_path).checkpoint({"model": Model(), "n": 1}, format="pickle")
    with pytest.raises(UnsafePickleError, match="allow_pickle=True"):
        _cap(tmp_path).restore()
    assert _cap(tmp_path).restore(allow_pickle=True)["n"] == 1


def test_a_link_in_place_of_the_run_folder_is_refused(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "checkpoints" / "r1")
    with pytest.raises(OSError, match="link"):
        _cap(tmp_path).checkpoint({"a": 1})
    assert not os.listdir(tmp_path / "elsewhere")


@pytest.mark.parametrize("damage", ["state", "index", "truncate"])
def test_a_damaged_checkpoint_is_quarantined_and_the_previous_one_used(tmp_path, damage):
    cap = _cap(tmp_path)
    cap.checkpoint({"epoch": 1, "w": np.ones(3)}, keep=2)
    cap.checkpoint({"epoch": 2, "w": np.ones(3) * 2}, keep=2)
    folder = tmp_path / "checkpoints" / "r1"
    newest = sorted(folder.glob("ckpt-*"))[-2:]  # its index entry and state file
    entry = next(p for p in newest if p.suffix == ".json")
    data = next(p for p in newest if p.suffix != ".json")
    if damage == "state":
        raw = bytearray(data.read_bytes())
        raw[-5] ^= 0x01  # one flipped bit in the arrays
        data.write_bytes(bytes(raw))
    elif damage == "index":
        entry.write_text(entry.read_text().replace('"seq":2', '"seq":3'))
    else:
        data.write_bytes(data.read_bytes()[:20])
    with pytest.warns(DamagedFileWarning, match="checkpoint"):
        got = _cap(tmp_path).restore()
    assert got["epoch"] == 1
    assert len(os.listdir(tmp_path / "quarantine")) == 2
    assert not entry.exists() and not data.exists()
    # The next checkpoint does not reuse a quarantined number's files.
    _cap(tmp_path).checkpoint({"epoch": 3, "w": np.zeros(3)}, keep=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _cap(tmp_path).restore()["epoch"] == 3


def test_only_damaged_checkpoints_restore_none(tmp_path):
    _cap(tmp_path).checkpoint({"epoch": 1})
    for p in (tmp_path / "checkpoints" / "r1").glob("*.json"):
        p.write_bytes(b"{not json")
    with pytest.warns(DamagedFileWarning):
        assert _cap(tmp_path).restore() is None


# -- generators and captured metrics ---------------------------------------------------


def _draws(seeds):
    a = seeds.numpy()
    b = seeds.rng()
    c = seeds.random_state()
    d = seeds.derive("model").numpy()
    e = seeds.numpy()  # a second generator of the same kind: its own saved state
    return a, b, c, d, e


def _next(gens):
    a, b, c, d, e = gens
    return [
        a.normal(size=3).tolist(),
        b.random(),
        c.normal(size=3).tolist(),
        d.integers(9, size=4).tolist(),
        e.random(),
    ]


def test_generators_continue_exactly_after_restore(tmp_path):
    seeds = SeedBundle(7, (0,)).tracked()
    gens = _draws(seeds)
    _next(gens)
    gens[2].normal()  # an odd number of gaussians: the legacy cached one must come back
    _cap(tmp_path, seeds=seeds).checkpoint({"k": 1})
    expected = _next(gens)

    later = SeedBundle(7, (0,)).tracked()
    cap = _cap(tmp_path, seeds=later)
    assert cap.restore() == {"k": 1}
    assert _next(_draws(later)) == expected  # handed out after restore()

    early = SeedBundle(7, (0,)).tracked()
    gens = _draws(early)  # handed out before restore()
    _cap(tmp_path, seeds=early).restore()
    assert _next(gens) == expected


def test_restore_brings_back_metrics_steps_artifacts_and_logs(tmp_path):
    cap = _cap(tmp_path)
    for step in range(3):
        cap.metric("loss", 1.0 / (step + 1), step=step)
    cap.metric("best", 0.25)
    cap.artifact("weights", np.arange(3))
    cap.log("epoch 2 done")
    cap.checkpoint({"epoch": 3})
    cap.metric("loss", 0.0, step=3)  # after the checkpoint: lost with the process

    again = _cap(tmp_path)
    again.restore()
    assert [s[:3] for s in again._steps] == [["loss", i, 1.0 / (i + 1)] for i in range(3)]
    assert again.scalars == {"loss": 1.0 / 3, "best": 0.25}
    assert [a["name"] for a in again.manifest] == ["weights"]
    assert again._logs[0][2] == "epoch 2 done"
    again.restore()  # a second call returns the state without adding the steps again
    assert len(again._steps) == 3


# -- in sweeps -------------------------------------------------------------------------


def _train(marker_dir, *, crash_at=None, term_at=None):
    @metalab.operation(name="train", version="1")
    def train(params, seeds, capture):
        state = capture.restore() or {"epoch": 0, "w": np.zeros(4)}
        rng = seeds.numpy()
        noise = seeds.derive("noise").rng()
        for epoch in range(state["epoch"], EPOCHS):
            state["w"] += rng.normal(size=4) * params["lr"] + noise.random()
            state["epoch"] = epoch + 1
            capture.metric("loss", float(np.abs(state["w"]).sum()), step=epoch)
            with open(os.path.join(marker_dir, "epochs"), "a") as f:
                f.write(f"{params['lr']} {epoch}\n")
            if capture.checkpoint_due():
                capture.checkpoint(state)
                return
            if epoch % 5 == 4:
                capture.checkpoint(state)
            once = os.path.join(marker_dir, f"once-{params['lr']}" if crash_at else "once")
            if epoch == crash_at and not os.path.exists(once):
                open(once, "w").close()
                raise RuntimeError("crash after a checkpoint")
            if epoch == term_at and not os.path.exists(once):
                open(once, "w").close()
                os.kill(os.getpid(), signal.SIGTERM)
        capture.metric("final", float(state["w"].sum()))

    return train


def _exp(op):
    return metalab.Experiment(name="ckpt", operation=op, params=metalab.grid(lr=[0.1, 0.3]))


def _final(store):
    res = metalab.load_results(store)
    table = res.to_pandas().sort_values("lr")
    series = res.series("loss").sort_values(["run_id", "step"])
    return table[["lr", "status", "loss", "final"]].reset_index(drop=True), series


def _reference(tmp_path):
    ref = tmp_path / "ref"
    ref.mkdir()
    metalab.run(_exp(_train(str(ref))), store=tmp_path / "ref-store")
    return _final(tmp_path / "ref-store")


def _same(got, ref):
    pd.testing.assert_frame_equal(got[0], ref[0])  # bit for bit
    cols = ["run_id", "name", "step", "value"]
    pd.testing.assert_frame_equal(
        got[1][cols].reset_index(drop=True), ref[1][cols].reset_index(drop=True)
    )


def test_a_failed_run_resumes_from_its_checkpoint(tmp_path):
    ref = _reference(tmp_path)
    marks = tmp_path / "m"
    marks.mkdir()
    exp = _exp(_train(str(marks), crash_at=12))
    res = metalab.run(exp, store=tmp_path / "s")
    assert res.counts()["failed"] == 2
    res = metalab.run(exp, store=tmp_path / "s")
    assert res.counts()["success"] == 2
    _same(_final(tmp_path / "s"), ref)
    epochs = (marks / "epochs").read_text().splitlines()
    assert epochs.count("0.1 10") == 2 and epochs.count("0.1 9") == 1  # from epoch 10 on
    assert not os.listdir(tmp_path / "s" / "checkpoints")  # success removes them


def test_sigterm_in_process_requeues_the_run_and_resume_continues(tmp_path):
    ref = _reference(tmp_path)
    marks = tmp_path / "m"
    marks.mkdir()
    exp = _exp(_train(str(marks), term_at=7))
    with pytest.raises(metalab.RunInterrupted):
        metalab.run(exp, store=tmp_path / "s")
    res = metalab.load_results(tmp_path / "s")
    assert res.counts()["requeued"] == 1 and res.counts()["failed"] == 0
    assert res.counts()["success"] == 0  # the sweep started no run after the SIGTERM
    # retry_failed=False still runs it again: requeued is not done.
    res = metalab.run(exp, store=tmp_path / "s", retry_failed=False)
    assert res.counts() == {"success": 2, "failed": 0, "pending": 0}
    _same(_final(tmp_path / "s"), ref)
    epochs = (marks / "epochs").read_text().splitlines()
    assert epochs.count("0.1 7") == 1 and epochs.count("0.1 8") == 1  # nothing repeated


@pytest.mark.cluster
def test_checkpoint_due_sees_the_end_of_a_real_workers_lifetime():
    import logging

    from distributed import Client, LocalCluster

    def probe():
        from metalab import _preemption

        cap = Capture("r1", None)
        return (
            _preemption.lifetime_left(),
            cap.checkpoint_due(margin_s=10),
            cap.checkpoint_due(margin_s=400),
        )

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            lifetime="300s",
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster) as client,
    ):
        left, due_10, due_400 = client.submit(probe, pure=False).result()
    assert 0 < left <= 300
    assert not due_10 and due_400
    assert Capture("r1", None).checkpoint_due(margin_s=1e9) is False  # no worker here
