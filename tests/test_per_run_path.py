"""The per-run path: journal bytes, metric encoding, seeds tracked per run, context checks."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import metalab
from metalab.errors import ContextError
from metalab.seeds import SeedBundle
from metalab.store.journal import Journal, JournalWriter, encode_metrics
from metalab.sweep.one_run import prepare, run_one
from metalab.sweep.partition import SweepTask


def _cols(n: int) -> dict[str, list]:
    return {
        "run_id": [f"r{i}" for i in range(n)],
        "params": ["{}"] * n,
        "replicate": [0] * n,
        "seed": [1] * n,
        "attempt": [1] * n,
    }


class _Recording(JournalWriter):
    """A writer that keeps a copy of every batch its ``_flush`` writes."""

    def _flush(self) -> None:
        self.batches = getattr(self, "batches", [])
        if self._lines:
            self.batches.append(b"".join(self._lines))
        super()._flush()


def test_every_journal_byte_reaches_the_file_through_flush(tmp_path):
    w = _Recording(tmp_path, sweep="s", part=3, columns=_cols(10), worker="w", flush_every=4)
    for i in range(10):
        if i == 6:
            w.mark_started(f"r{i}")
        w.append([f"r{i}", "success", i, i + 1, {"y": i, "z": 0.5}, None])
        # at most 3 finished runs are ever only in memory (the durability promise)
        on_disk = Journal(w.path)
        assert i + 1 - len(on_disk.outcomes) <= 3
    w.close()
    data = w.path.read_bytes()
    assert b"".join(w.batches) == data
    # the header; runs 0-3; runs 4-5 with the start mark of run 6; runs 6-9
    assert [b.count(b"\n") for b in w.batches] == [1, 4, 3, 4]
    j = Journal(w.path)
    assert [o[0] for o in j.outcomes] == [f"r{i}" for i in range(10)]
    assert j.started == ["r6"] and not j.damaged_lines
    assert j.outcomes[9][4] == {"y": 9, "z": 0.5}


def test_a_slow_run_is_flushed_at_once(tmp_path):
    w = _Recording(tmp_path, sweep="s", part=0, columns=_cols(2), worker="w", flush_every=4)
    w.append(["r0", "success", 0, 1, {}, None])
    assert len(Journal(w.path).outcomes) == 0
    w.append(["r1", "success", 1, w._last_flush_us + 30_000, {}, None])  # a 30 ms run
    assert len(Journal(w.path).outcomes) == 2
    w.discard()
    assert not w.path.exists()


class _Int(int):
    pass


@pytest.mark.parametrize(
    "metrics",
    [
        {"y": 1, "x2": 2, "one": 1.0},
        {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "t": True, "f": False},
        {"é": 1, 'q"uote': -0.0, "big": 10**30, "sub": _Int(3)},
        {"s": "text", "none": None, "list": [1, 2.5]},
    ],
)
def test_metric_encoding_is_json_dumps(metrics):
    assert encode_metrics(metrics) == json.dumps(metrics, separators=(",", ":"))


@metalab.operation(name="draws", version="1")
def draws(params, seeds, capture):
    if params["x"] % 3 == 0:
        capture.metric("u", float(seeds.numpy().random()))
    capture.metric("s", int(seeds))


def test_tracked_seeds_are_reused_only_by_runs_after_an_untouched_one(tmp_path):
    op = prepare(SweepTask(store_root=str(tmp_path), sweep="s", seed_base=4), draws, None)
    base = SeedBundle(4, (0,))
    bundles = []
    for x in range(6):
        out = run_one(op, f"r{x}", {"x": x}, base)
        bundles.append(op.tracked[(0,)])
        expect = {"s": int(base)}
        if x % 3 == 0:
            expect["u"] = float(SeedBundle(4, (0,)).numpy().random())  # the same stream
        assert out[4] == expect
    # x=0 drew (its bundle is not reused); 1 and 2 share one; 3 drew in it; 4 and 5 share.
    assert bundles[0] is not bundles[1]
    assert bundles[1] is bundles[2] is bundles[3]
    assert bundles[3] is not bundles[4] and bundles[4] is bundles[5]
    assert bundles[5].untouched() and not bundles[3].untouched()


@metalab.operation(name="no_seeds", version="1")
def no_seeds(params, context):
    if params["x"] == 1:
        context["df"].iloc[0, 0] = 99  # changes the watched context in place


def test_context_checked_per_run_only_when_it_has_watched_values(tmp_path):
    task = SweepTask(store_root=str(tmp_path), sweep="s", seed_base=0)
    plain = metalab.Experiment("p", no_seeds, params=metalab.grid(x=[0]), context={"a": 1})
    assert not prepare(task, no_seeds, plain.context).watched
    exp = metalab.Experiment(
        "w", no_seeds, params=metalab.grid(x=[0, 1, 2]), context={"df": pd.DataFrame({"a": [1]})}
    )
    op = prepare(task, no_seeds, exp.context)
    assert op.watched and not op.seeds
    outs = [run_one(op, f"r{x}", {"x": x}, SeedBundle(0, (0,))) for x in range(3)]
    assert [o[1] for o in outs] == ["success", "success", "failed"]
    assert outs[2][5]["error"]["type"] == ContextError.__name__
    assert np.asarray(exp.context["df"]).ravel().tolist() == [99]


@metalab.operation(name="bare", version="1")
def bare(params):
    """No capture asked for: metrics only through the return value."""
    if params["x"] == 1:
        raise ValueError("one")
    return {"y": params["x"] * 10} if params["x"] == 2 else None


def test_an_operation_without_capture_records_returns_failures_and_retries(tmp_path):
    exp = metalab.Experiment(name="bare", operation=bare, params=metalab.grid(x=[0, 1, 2]))
    table = metalab.run(exp, store=tmp_path / "s", retries=1).table(as_dataframe=True)
    rows = table.set_index("x")
    assert rows["status"].to_dict() == {0: "success", 1: "failed", 2: "success"}
    assert rows.loc[2, "y"] == 20 and pd.isna(rows.loc[0, "y"])
    assert rows.loc[1, "error_type"] == "ValueError" and rows.loc[1, "retries"] == 1
    assert rows.loc[0, "retries"] == 0
