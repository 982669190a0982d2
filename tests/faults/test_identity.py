"""Issue 11, item 10: a context that is really read-only, identities that never collide.

Each test reproduces a case of the issue on the real API (Experiment, run, the
results table) and asserts the fix: a read-only context stays read-only, a mutable
value that changes is caught with a ContextError, different values never share a
fingerprint or a run id, and parameter spaces the table cannot hold faithfully are
refused up front with a clear error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import metalab
from metalab._hashing import (
    canonical_json,
    fingerprint,
    normalize_params,
    run_id,
    run_id_prefix,
    run_ids_for,
)
from metalab.context import FrozenContext, check_context
from metalab.errors import ContextError, ExperimentError, ParamError, ParamSpaceError


@metalab.operation(name="noop")
def noop(params):
    pass


def _exp(context=None, params=None, **kw) -> metalab.Experiment:
    return metalab.Experiment(
        name=kw.pop("name", "ident"),
        operation=kw.pop("operation", noop),
        params=params if params is not None else {"x": 1},
        context=context,
        **kw,
    )


# -- 1. read-only contexts ---------------------------------------------------------------
@metalab.context_spec
class ArraySpec:
    arr: np.ndarray
    tags: list = dataclasses.field(default_factory=list)


def _contexts_with_array(arr):
    return {
        "dict": FrozenContext({"a": arr}),
        "nested": FrozenContext({"cfg": {"a": [arr]}}),
        "spec": ArraySpec(arr=arr),
    }


def _get(ctx, kind):
    return {"dict": lambda: ctx["a"], "nested": lambda: ctx.cfg["a"][0], "spec": lambda: ctx.arr}[
        kind
    ]()


@pytest.mark.parametrize("kind", ["dict", "nested", "spec"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: np.arange(6.0).reshape(2, 3),
        lambda: np.asfortranarray(np.arange(6).reshape(2, 3)),
        lambda: np.arange(10)[::2],  # a non-contiguous view
        lambda: np.zeros((0, 3)),
        lambda: np.array(5),
        lambda: np.zeros(3, dtype=[("x", "i4"), ("y", "f8")]),
    ],
    ids=["float2d", "fortran", "strided", "empty", "0d", "structured"],
)
def test_context_arrays_cannot_be_made_writable(kind, make):
    original = make()
    before = original.copy()
    ctx = _contexts_with_array(original)[kind]
    fp = ctx.fingerprint
    arr = _get(ctx, kind)
    np.testing.assert_array_equal(arr, before)
    with pytest.raises(ValueError):
        arr.setflags(write=True)
    base = arr
    while isinstance(base, np.ndarray):  # no array up the chain can be made writable
        with pytest.raises(ValueError):
            base.view().setflags(write=True)
        base = base.base
    # The caller's array is decoupled: changing it changes nothing in the context.
    if original.size and original.dtype.names is None:
        original[...] = 7
        np.testing.assert_array_equal(_get(ctx, kind), before)
    assert ctx.fingerprint == fp
    # Unpickled, as on a worker, the array is read-only again.
    copy = pickle.loads(pickle.dumps(ctx))
    with pytest.raises(ValueError):
        _get(copy, kind).setflags(write=True)
    assert copy.fingerprint == fp


def test_read_only_memory_is_shared_not_copied(tmp_path):
    """An array over memory that is read-only already (a read-only memmap) is not copied."""
    path = tmp_path / "big.npy"
    np.save(path, np.arange(1000))
    mm = np.load(path, mmap_mode="r")
    ctx = FrozenContext({"a": mm})
    assert np.shares_memory(ctx["a"], mm)
    with pytest.raises(ValueError):
        ctx["a"].setflags(write=True)


@metalab.operation(name="try_write")
def try_write(context, capture):
    try:
        context["a"].setflags(write=True)
        context["a"][0] = 99
        capture.metric("wrote", True)
    except ValueError:
        capture.metric("wrote", False)
    capture.metric("a0", float(context["a"][0]))


def test_an_operation_cannot_write_into_a_context_array():
    exp = _exp({"a": np.zeros(3)}, metalab.grid(i=[0, 1, 2]), operation=try_write)
    res = metalab.run(exp)
    assert [r.metrics for r in res] == [{"wrote": False, "a0": 0.0}] * 3


@metalab.operation(name="try_write_remote")
def try_write_remote(context, capture):
    for name, arr in (("spec", context.arr), ("dict", context.tags[0]["a"])):
        try:
            arr.setflags(write=True)
            capture.metric(f"{name}_writable", True)
        except ValueError:
            capture.metric(f"{name}_writable", False)


@pytest.mark.cluster
def test_context_arrays_stay_read_only_on_cluster_workers(client):
    """Shipped by cloudpickle, the arrays are unpickled writable: they are frozen again."""
    ctx = ArraySpec(arr=np.arange(4), tags=[{"a": np.ones(2)}])
    exp = _exp(ctx, metalab.grid(i=[0, 1]), operation=try_write_remote, name="remote_ro")
    res = metalab.run(exp, executor=metalab.DaskExecutor(client))
    assert [r.status for r in res] == ["success"] * 2, [r.error for r in res]
    for r in res:
        assert r.metrics == {"spec_writable": False, "dict_writable": False}


@metalab.operation(name="mutate_df")
def mutate_df(context, capture):
    df = context["df"]
    capture.metric("first", int(df["x"].iloc[0]))
    df.loc[0, "x"] = df["x"].iloc[0] + 1  # a bug: changes the shared context in place


def test_a_dataframe_changed_by_an_operation_fails_the_next_runs_clearly():
    exp = _exp({"df": pd.DataFrame({"x": [1, 2]})}, metalab.grid(i=[0, 1, 2]), operation=mutate_df)
    res = metalab.run(exp)
    runs = sorted(res, key=lambda r: r.params["i"])
    # The run that changed it saw the right data; no later run sees the changed data.
    assert [r.status for r in runs] == ["success", "failed", "failed"]
    assert runs[0].metrics == {"first": 1}
    for r in runs[1:]:
        assert r.error["type"] == "ContextError"
        assert "context.df" in r.error["message"] and ".copy()" in r.error["message"]
    # And the next sweep (or plan) refuses to start on the changed context.
    with pytest.raises(ContextError, match=r"context\.df .*changed"):
        exp.plan()


def _write_through_numpy(df):
    values = df["x"].to_numpy()
    values.setflags(write=True)  # pandas hands out read-only views of writable memory
    values[0] = 42


@pytest.mark.parametrize(
    "mutate",
    [
        lambda df: df.loc.__setitem__((0, "x"), 5),
        lambda df: df.__setitem__("y", 0),
        lambda df: df.__delitem__("x"),
        lambda df: setattr(df, "columns", ["z"]),
        lambda df: setattr(df.index, "name", "renamed"),
        lambda df: df.__setitem__("x", df["x"].astype("int32")),
        _write_through_numpy,
    ],
    ids=["loc", "new-col", "del", "rename", "index-name", "dtype", "raw-write"],
)
def test_every_in_place_change_of_a_context_frame_is_caught(mutate):
    ctx = FrozenContext({"df": pd.DataFrame({"x": [1, 2]}), "s": pd.Series([1.0, 2.0])})
    check_context(ctx)  # unchanged: fine
    mutate(ctx["df"])
    with pytest.raises(ContextError, match=r"context\.df \(pandas\.DataFrame\) changed"):
        check_context(ctx)


def test_reading_a_context_frame_is_not_a_change():
    ctx = FrozenContext({"df": pd.DataFrame({"x": [1, 2]})})
    df = ctx["df"]
    _ = df.describe(), df.to_numpy(), df["x"].sum(), df.copy().assign(y=1)
    check_context(ctx)


def test_changing_the_callers_frame_after_building_does_not_reach_the_context():
    df = pd.DataFrame({"x": [1, 2]})
    exp = _exp({"df": df})
    ids = exp.plan()["run_id"].tolist()
    df.loc[0, "x"] = 99
    df["extra"] = 1
    assert exp.context["df"].equals(pd.DataFrame({"x": [1, 2]}))
    assert exp.plan()["run_id"].tolist() == ids


def test_bytearrays_become_immutable_bytes():
    raw = bytearray(b"abc")
    exp = _exp({"raw": raw, "view": memoryview(bytearray(b"xy"))})
    ids = exp.plan()["run_id"].tolist()
    assert exp.context["raw"] == b"abc" and type(exp.context["raw"]) is bytes
    assert type(exp.context["view"]) is bytes
    raw[0] = ord("z")
    with pytest.raises(TypeError):
        exp.context["raw"][0] = 1  # type: ignore[index]
    assert exp.context["raw"] == b"abc"
    assert exp.plan()["run_id"].tolist() == ids


@dataclasses.dataclass
class PlainConfig:
    lr: float = 0.1
    layers: list = dataclasses.field(default_factory=lambda: [1, 2])


@dataclasses.dataclass(frozen=True)
class FrozenPlain:
    lr: float = 0.1


@pytest.mark.parametrize("value", [PlainConfig(), FrozenPlain()], ids=["plain", "frozen"])
def test_a_plain_dataclass_context_is_refused_at_construction(value):
    with pytest.raises(ContextError) as info:
        _exp(value)
    msg = str(info.value)
    assert type(value).__qualname__ in msg and "@metalab.context_spec" in msg
    assert "asdict" in msg


def test_a_plain_dataclass_inside_a_context_is_watched():
    cfg = PlainConfig()
    exp = _exp({"cfg": cfg})
    exp.plan()
    exp.context["cfg"].layers.append(3)
    with pytest.raises(ContextError, match=r"context\.cfg .*PlainConfig.*changed"):
        exp.plan()


def test_context_nesting_is_bounded():
    deep: dict = {}
    cur = deep
    for _ in range(1000):
        cur["a"] = {}
        cur = cur["a"]
    with pytest.raises(ContextError, match="nested more than"):
        _exp({"deep": deep})
    loop: list = []
    loop.append(loop)
    with pytest.raises(ContextError, match="contains itself"):
        _exp({"loop": loop})
    with pytest.raises(ContextError, match="nested more than"):
        fingerprint({"deep": deep})


# -- 2. injective identity encoding ------------------------------------------------------
@metalab.context_spec
class Spec:
    a: int = 1


_SHA_X = hashlib.sha256(b"x").hexdigest()
_ARR = np.arange(3)
_ARR_SHA = hashlib.sha256(_ARR.view(np.uint8).data).hexdigest()

COLLIDING = {
    "inf": (math.inf, "inf"),
    "-inf": (-math.inf, "-inf"),
    "nan": (math.nan, "nan"),
    "path": (Path("data/x.csv"), {"__path__": "data/x.csv"}),
    "bytes": (b"x", {"__bytes__": _SHA_X}),
    "ndarray": (_ARR, {"__ndarray__": _ARR_SHA, "dtype": _ARR.dtype.str, "shape": [3]}),
    "spec": (Spec(), {"__fingerprint__": Spec().fingerprint, "type": "Spec"}),
    "dataclass": (FrozenPlain(), {"__dataclass__": "FrozenPlain", "lr": 0.1}),
    "escape": ({"__mapping__": {"a": 1}}, {"a": 1}),
    "escape2": ({"__mapping__": {"__path__": "p"}}, {"__path__": "p"}),
    "int32-frame": (
        pd.DataFrame({"x": np.array([1, 2], dtype="int32")}),
        pd.DataFrame({"x": np.array([1, 2], dtype="int64")}),
    ),
    "series-name": (pd.Series([1, 2], name="a"), pd.Series([1, 2], name="b")),
}


@pytest.mark.parametrize(("a", "b"), COLLIDING.values(), ids=COLLIDING.keys())
def test_different_context_values_never_share_a_fingerprint(a, b):
    exp_a, exp_b = _exp({"v": a}), _exp({"v": b})
    assert exp_a.context.fingerprint != exp_b.context.fingerprint
    assert set(exp_a.plan()["run_id"]).isdisjoint(exp_b.plan()["run_id"])
    # ... and each is stable: the same value again gives the same fingerprint.
    assert _exp({"v": a}).context.fingerprint == exp_a.context.fingerprint


def test_a_top_level_spec_and_the_dict_of_its_encoding_differ():
    spec_exp = _exp(Spec())
    dict_exp = _exp({"__spec__": "Spec", "fields": {"a": 1}})
    assert spec_exp.context.fingerprint != dict_exp.context.fingerprint


def test_ordinary_context_values_keep_their_fingerprint():
    """Plain JSON data is encoded as itself: sha256 of its canonical JSON, as documented."""
    ctx = {"dataset": "mnist", "sizes": [1, 2, 3], "nested": {"k": [1.5, None, True]}}
    expected = hashlib.sha256(canonical_json(ctx).encode()).hexdigest()
    assert _exp(ctx).context.fingerprint == expected
    # Dunder keys that are not tags are ordinary keys, too.
    ctx = {"__version__": "1.2", "__doc__": "x"}
    assert fingerprint(ctx) == hashlib.sha256(canonical_json(ctx).encode()).hexdigest()


@pytest.mark.parametrize(
    ("a", "b"),
    [({"x": math.nan}, {"x": "nan"}), ({"x": math.inf}, {"x": "Infinity"}), ({"x": 1}, {"x": 1.0})],
)
def test_params_identity_is_injective_on_the_reference_and_bulk_paths(a, b):
    parts = dict(
        context_fp="c" * 64,
        experiment="e",
        experiment_version="1",
        operation="o",
        operation_version="1",
    )
    prefix = run_id_prefix(**parts)
    ids = []
    for p in (a, b):
        norm = normalize_params(p)
        ref = run_id(**parts, params=norm, base=0, replicate=0)
        assert run_ids_for(prefix, [canonical_json(norm)], 0, 0) == [ref]
        ids.append(ref)
    assert ids[0] != ids[1]
    plans = [_exp(params=metalab.grid(x=[p["x"]])).plan()["run_id"][0] for p in (a, b)]
    assert plans[0] != plans[1]


# -- 3. params that the results table can hold faithfully ---------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: metalab.manual([{"a.b": 1}]),
        lambda: metalab.manual([{"m": {"a.b": 1}}]),
        lambda: metalab.grid(**{"a.b": [1]}),
        lambda: metalab.grid(m=[{"a.b": 1}]),
        lambda: metalab.random(space={"a.b": metalab.uniform(0, 1)}, n_trials=2),
        lambda: metalab.choice([{"a.b": 1}]),
        lambda: _exp(params={"a.b": 1}),
    ],
    ids=["manual", "nested", "grid-axis", "grid-value", "random", "choice", "experiment"],
)
def test_dotted_param_keys_are_refused_with_the_fix(make):
    with pytest.raises(ParamError) as info:
        make()
    msg = str(info.value)
    assert "'a.b'" in msg and "'a_b'" in msg and "params.a.b" in msg


def test_dotted_keys_inside_lists_are_fine():
    """A list is stored as JSON text in one column, so its dicts' keys are never columns."""
    assert list(metalab.manual([{"layers": [{"a.b": 1}]}])) == [{"layers": [{"a.b": 1}]}]


def test_nested_and_flat_params_no_longer_share_a_column():
    """The issue's case: only the nested form is accepted, so one column, one meaning."""
    exp = _exp(params=[{"a": {"b": 1}}, {"a": {"b": 2}}])
    res = metalab.run(exp)
    df = res.table(as_dataframe=True)
    assert sorted(df["a.b"].tolist()) == [1, 2]
    with pytest.raises(ParamError):
        _exp(params=[{"a": {"b": 1}}, {"a.b": 2}])


@pytest.mark.parametrize("value", [2**63, 2**64 - 1, 2**70, -(2**63) - 1, np.uint64(2**63)])
def test_ints_beyond_int64_are_refused_at_planning(value):
    with pytest.raises(ParamError, match=r"64-bit.*str\(value\)"):
        metalab.grid(n=[1, value])
    with pytest.raises(ParamError, match="64-bit"):
        _exp(params={"m": {"n": value}})


@metalab.operation(name="echo")
def echo(params, capture):
    capture.metric("ok", 1)


def test_int64_extremes_and_bools_round_trip_in_the_table():
    values = [2**63 - 1, -(2**63), 2**53 + 1, 0]
    exp = _exp(params=metalab.grid(n=values, flag=[True, False]), operation=echo, name="roundtrip")
    res = metalab.run(exp)
    df = res.table(as_dataframe=True)
    got = sorted(zip(df["n"].tolist(), df["flag"].tolist(), strict=True))
    assert got == sorted((n, f) for n in values for f in (True, False))
    assert all(type(n) is int for n in df["n"].tolist())
    assert all(type(f) is bool for f in df["flag"].tolist())
    # Big ints are fine inside lists: those are stored as JSON text.
    assert list(metalab.manual([{"big": [2**70]}])) == [{"big": [2**70]}]


@pytest.mark.parametrize(
    "make",
    [
        lambda: metalab.grid(x=[True, 1]),
        lambda: metalab.grid(x=[False, 0.5]),
        lambda: metalab.grid(x=[True]) + metalab.grid(x=[1]),
        lambda: metalab.manual([{"m": {"x": True}}, {"m": {"x": 2}}]),
        lambda: metalab.random(space={"x": metalab.choice([True, 2])}, n_trials=3),
        lambda: metalab.grid(y=[1]) * (metalab.manual([{"x": 1}]) + metalab.manual([{"x": False}])),
        lambda: _exp(params=[{"x": True}, {"x": 3}]),
        lambda: metalab.grid(x=[2**53 + 1, 0.5]),
    ],
    ids=["grid", "grid-float", "concat", "manual", "random", "product", "experiment", "big+float"],
)
def test_columns_mixing_bools_and_numbers_are_refused(make):
    with pytest.raises(ParamSpaceError) as info:
        make()
    msg = str(info.value)
    assert "'x'" in msg or "'m.x'" in msg
    assert "one type" in msg or "2**53" in msg


def test_columns_that_hold_one_type_are_accepted():
    metalab.grid(x=[True, False, None], y=[1, 2.5, None], z=["a", None])
    metalab.grid(x=[1]) + metalab.grid(x=[0.5])
    metalab.random(space={"x": metalab.choice([1, 2.5]), "y": metalab.randint(0, 9)}, n_trials=2)


def _deep(n: int) -> dict:
    d: dict = {"leaf": 1}
    for _ in range(n):
        d = {"a": d}
    return d


@pytest.mark.parametrize(
    "make",
    [
        lambda: metalab.manual([_deep(1000)]),
        lambda: metalab.grid(x=[_deep(1000)]),
        lambda: _exp(params=_deep(1000)),
        lambda: metalab.manual([{"x": _deep_list(1000)}]),
    ],
    ids=["manual", "grid", "experiment", "lists"],
)
def test_deep_params_raise_a_param_error_not_a_recursion_error(make):
    with pytest.raises(ParamError, match="nested more than 100 levels"):
        make()


def _deep_list(n: int) -> list:
    x: list = []
    for _ in range(n):
        x = [x]
    return x


def test_a_param_that_contains_itself_is_a_param_error():
    d: dict = {}
    d["self"] = d
    with pytest.raises(ParamError, match="contains itself"):
        metalab.manual([d])


def test_nesting_within_the_limit_works():
    assert list(metalab.manual([_deep(90)])) == [_deep(90)]


@pytest.mark.parametrize(
    "make",
    [
        lambda: metalab.seeds(replicates=10**12),
        lambda: metalab.grid(a=range(10**4), b=range(10**4), c=range(10**4)),
        lambda: metalab.grid(a=range(10**4)) * metalab.grid(b=range(10**5)),
        lambda: metalab.random(space={"x": metalab.uniform(0, 1)}, n_trials=10**12),
        lambda: _exp(params=metalab.grid(a=range(10**5)), seeds=metalab.seeds(replicates=10**4)),
    ],
    ids=["replicates", "grid", "product", "random", "experiment"],
)
def test_absurd_sizes_are_refused_with_the_limit(make):
    with pytest.raises((ExperimentError, ParamSpaceError), match="100,000,000"):
        make()


def test_sizes_at_the_limit_are_accepted_without_planning():
    exp = _exp(params=metalab.grid(a=range(10**4)), seeds=metalab.seeds(replicates=10**4))
    assert len(exp) == 10**8
