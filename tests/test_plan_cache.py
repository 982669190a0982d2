"""The store's cache of planned run ids (``plans/``): used when valid, and a stale,
damaged or mismatching copy is detected, ignored and rebuilt; resume still skips exactly
the finished runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import metalab
from metalab.store import Store, plan_cache
from metalab.sweep.planning import descriptors, is_in, plan_todo


@metalab.operation(name="logged", version="1")
def logged(context, params, seeds, capture):
    """Logs each execution; x in context["fail"] fails until the file context["fix"] exists."""
    with open(context["log"], "a") as f:
        f.write(json.dumps({**params, "seed": int(seeds)}) + "\n")
    if params["x"] in context["fail"] and not Path(context["fix"]).exists():
        raise ValueError(f"bad x={params['x']}")
    capture.metric("y", params["x"] * 2)


@pytest.fixture(autouse=True)
def _small_plans_cached(monkeypatch):
    """Cache plans of any size here (the real threshold keeps small plans uncached)."""
    monkeypatch.setattr(plan_cache, "MIN_RUNS", 1)


def _exp(tmp_path: Path, xs: int = 30, params=None, replicates: int = 2) -> metalab.Experiment:
    return metalab.Experiment(
        name="cached",
        operation=logged,
        context={"log": str(tmp_path / "calls.log"), "fix": str(tmp_path / "fix"), "fail": [3, 7]},
        params=params if params is not None else metalab.grid(a=["p", "q"], x=list(range(xs))),
        seeds=metalab.seeds(base=5, replicates=replicates),
    )


def _calls(tmp_path: Path) -> list[dict]:
    log = tmp_path / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return [json.loads(line) for line in lines]


def _plans(store: Path) -> list[Path]:
    return sorted((store / "plans").glob("*.parquet"))


def _check_plan(exp: metalab.Experiment, store: Path) -> None:
    """plan_todo without resume gives exactly Experiment.plan(), rows and all."""
    planned, todo, skipped = plan_todo(exp, Store.open(store), resume=False, retry_failed=True)
    ref = exp.plan()
    assert planned["run_id"].tolist() == ref["run_id"].tolist()
    assert skipped == 0
    cols = ["run_id", "params", "replicate", "seed"]
    assert todo[cols].astype(object).values.tolist() == ref[cols].astype(object).values.tolist()


def test_resume_reads_the_cached_plan_and_skips_exactly_the_finished_runs(tmp_path):
    exp, store = _exp(tmp_path), tmp_path / "store"
    first = metalab.run(exp, store=store, progress=False)
    assert len(_calls(tmp_path)) == len(exp) == 120
    assert first.counts()["failed"] == 8  # x = 3 and 7, for a = p, q, two replicates each
    failed = sorted((r.params["a"], r.params["x"], r.seed) for r in first if r.status == "failed")
    (cached,) = _plans(store)
    (tmp_path / "fix").touch()
    second = metalab.run(exp, store=store, progress=False)  # resume, retry the failed runs
    again = _calls(tmp_path)
    assert sorted((c["a"], c["x"], c["seed"]) for c in again) == failed
    assert second.counts()["success"] == 120
    assert _plans(store) == [cached]  # read, not rebuilt
    metalab.run(exp, store=store, progress=False)
    assert _calls(tmp_path) == []
    _check_plan(exp, store)


@pytest.mark.parametrize("share", [0.01, 0.5])
def test_descriptors_built_from_a_cached_plan_are_the_plans_rows(tmp_path, share):
    # Few runs to do (params built one by one) and many (built in bulk).
    exp = _exp(tmp_path, xs=100, replicates=3)
    plan = exp.plan()
    ids = pa.array(plan["run_id"], pa.string())
    positions = np.flatnonzero(np.random.default_rng(1).random(len(plan)) < share)
    got = descriptors(exp, None, ids, positions)
    ref = plan.iloc[positions].reset_index(drop=True)
    assert got.dtypes.to_dict() == ref.dtypes.to_dict()
    assert got.astype(object).values.tolist() == ref.astype(object).values.tolist()


def test_resume_runs_exactly_the_unfinished_runs_with_the_cached_plan(tmp_path):
    exp = _exp(tmp_path, xs=20, replicates=1)
    exp = metalab.Experiment(
        name="cached",
        operation=logged,
        context={**exp.context, "fail": list(range(5, 20))},  # 30 of 40 runs fail
        params=exp.params,
        seeds=exp.seeds,
    )
    store = tmp_path / "store"
    metalab.run(exp, store=store, progress=False)
    _calls(tmp_path)
    (tmp_path / "fix").touch()
    res = metalab.run(exp, store=store, progress=False)
    assert sorted((c["a"], c["x"]) for c in _calls(tmp_path)) == sorted(
        (a, x) for a in "pq" for x in range(5, 20)
    )
    assert res.counts()["success"] == 40
    assert len(_plans(store)) == 1


def test_a_damaged_cached_plan_is_detected_and_rebuilt(tmp_path):
    exp, store = _exp(tmp_path), tmp_path / "store"
    metalab.run(exp, store=store, progress=False)
    _calls(tmp_path)
    for damage in ("flip", "truncate"):
        (path,) = _plans(store)
        raw = bytearray(path.read_bytes())
        if damage == "flip":
            raw[len(raw) // 3] ^= 0x01  # one bit of one run id
        else:
            raw = raw[: len(raw) // 2]
        path.write_bytes(bytes(raw))
        assert plan_cache.load(Store.open(store).layout, exp) is None
        assert not path.exists()  # never used again
        metalab.run(exp, store=store, progress=False)
        assert len(_calls(tmp_path)) == 8  # the failed runs only: the plan was recomputed
        (rebuilt,) = _plans(store)
        assert rebuilt != path
        _check_plan(exp, store)


def test_a_stale_cached_plan_is_detected_by_its_sampled_rows(tmp_path):
    exp, store = _exp(tmp_path), tmp_path / "store"
    metalab.run(exp, store=store, progress=False)
    (path,) = _plans(store)
    key = plan_cache.plan_key(exp)
    assert key is not None and path.name.startswith(key)
    # A well-formed, checksummed file under this plan's key, holding another plan's ids
    # (as a different recipe would write): the key, count and checksums all match.
    other = _exp(tmp_path, xs=30).plan()["run_id"].tolist()
    other = other[1:] + other[:1]  # the same ids, rotated: every position is wrong
    path.unlink()
    stale = plan_cache.folder(Store.open(store).layout) / f"{key}-000000000000.parquet"
    plan_cache._write(stale, key, pa.array(other, pa.string()))
    assert plan_cache.load(Store.open(store).layout, exp) is None
    assert not stale.exists()
    # Another plan's file renamed to this key, and a count that does not match, likewise.
    small = _exp(tmp_path, xs=29)
    st = Store.open(store)
    for bad in (small, _exp(tmp_path, xs=30, replicates=1)):
        src = plan_cache.save(st.layout, bad, pa.array(bad.plan()["run_id"], pa.string()))
        assert src is not None
        src.rename(stale)
        assert plan_cache.load(st.layout, exp) is None
        assert not stale.exists()
    _check_plan(exp, store)


def test_a_changed_params_source_gets_its_own_plan(tmp_path):
    store = tmp_path / "store"
    metalab.run(_exp(tmp_path, xs=30), store=store, progress=False)
    assert len(_calls(tmp_path)) == 120
    grown = _exp(tmp_path, xs=40)  # ten more values of x: 40 more runs
    metalab.run(grown, store=store, progress=False)
    calls = _calls(tmp_path)
    assert len(calls) == 40 + 8  # the new runs and the failed ones
    assert {c["x"] for c in calls} == set(range(30, 40)) | {3, 7}
    assert len(_plans(store)) == 2
    _check_plan(grown, store)
    # The same values in another axis order (another plan order) and a seed change too.
    swapped = _exp(tmp_path, params=metalab.grid(x=list(range(40)), a=["p", "q"]))
    reseeded = metalab.Experiment(
        name="cached",
        operation=logged,
        context=grown.context,
        params=grown.params,
        seeds=metalab.seeds(base=6, replicates=2),
    )
    keys = {plan_cache.plan_key(e) for e in (grown, swapped, reseeded)}
    assert len(keys) == 3
    for e in (swapped, reseeded):
        _check_plan(e, store)  # computed and cached
        _check_plan(e, store)  # read from the cache


def test_concurrent_copies_any_valid_one_is_used_and_one_is_kept(tmp_path):
    exp = _exp(tmp_path)
    st = Store.open(tmp_path / "store", create=True)
    ids = pa.array(exp.plan()["run_id"], pa.string())
    a = plan_cache.save(st.layout, exp, ids)
    b_path = plan_cache.folder(st.layout) / f"{plan_cache.plan_key(exp)}-ffffffffffff.parquet"
    plan_cache._write(b_path, plan_cache.plan_key(exp) or "", ids)  # a second driver's copy
    assert a is not None and len(_plans(st.root)) == 2
    assert plan_cache.load(st.layout, exp).to_pylist() == ids.to_pylist()
    c = plan_cache.save(st.layout, exp, ids)
    assert _plans(st.root) == [c]  # the other copies pruned


@pytest.mark.parametrize(
    "source",
    [
        metalab.grid(a=[1, 2.5, "s"], b=[None, True], c=[[1, 2], {"k": 1}]),
        metalab.manual([{"x": 1}, {"x": 2, "y": "z"}, {}]),
        metalab.random({"lr": metalab.loguniform(1e-4, 1e-1), "k": 3}, n_trials=7, seed=2),
        metalab.grid(x=[1, 2]) + metalab.manual([{"x": 9}]),
        metalab.grid(x=[1, 2, 3]) * metalab.manual([{"y": "a"}, {"y": "b"}]),
    ],
    ids=["grid", "manual", "random", "concat", "product"],
)
def test_random_access_matches_iteration(source):
    assert [plan_cache.params_json_at(source, i) for i in range(len(source))] == list(
        source.iter_json()
    )
    assert plan_cache.source_document(source) is not None


def test_is_in_is_exact_when_keys_collide():
    # Same first 16 characters: the same 64-bit key, different ids.
    a, b, c = "a" * 16 + "0" * 16, "a" * 16 + "1" * 16, "b" * 32
    ids = pa.array([a, b, c, "short"], pa.string())
    assert is_in(ids, pa.array([b, c], pa.string())).tolist() == [False, True, True, False]
    assert is_in(ids[:3], pa.array([b, a, b], pa.string())).tolist() == [True, True, False]
    assert is_in(ids[:3], pa.array([], pa.string())).tolist() == [False, False, False]


def test_is_in_takes_records_in_plan_order_in_one_comparison_and_stays_exact(monkeypatch):
    from metalab.sweep import planning

    ids = pa.array([f"{i:032x}" for i in range(1, 200)], pa.string())
    with monkeypatch.context() as m:  # records in plan order: no key matching at all

        def no_matching(*args):
            raise AssertionError("records in plan order were matched key by key")

        m.setattr(planning, "key_positions", no_matching)
        assert is_in(ids, ids).all()  # the records in plan order
    assert is_in(ids, ids.take(pa.array(np.arange(198, -1, -1)))).all()  # any order
    # Same length, one id differing in its last character: only that one is missing.
    other = ids.to_pylist()
    other[57] = other[57][:-1] + ("0" if other[57][-1] != "0" else "1")
    found = is_in(ids, pa.array(other, pa.string()))
    assert found.sum() == len(ids) - 1 and not found[57]


def test_key_positions_finds_a_position_of_each_key_or_minus_one():
    from metalab.sweep.planning import key_positions

    rng = np.random.default_rng(3)
    values = rng.integers(0, 50, 80).astype(np.uint64)  # repeated keys
    keys = rng.integers(0, 70, 200).astype(np.uint64)  # some absent
    pos = key_positions(keys, values)
    present = set(values.tolist())
    for k, p in zip(keys.tolist(), pos.tolist(), strict=True):
        assert (p >= 0) == (k in present)
        if p >= 0:
            assert values[p] == k
    assert (key_positions(keys, values[:0]) == -1).all()
    assert len(key_positions(keys[:0], values)) == 0
