"""Parameter sources: grid, random, manual, composition, validation, descriptors."""

from __future__ import annotations

import datetime
import json

import numpy as np
import pytest

import metalab
from metalab.errors import ParamError, ParamSpaceError


@metalab.operation(name="noop")
def noop(params):
    pass


SPACE = {
    "lr": metalab.loguniform(1e-4, 1e-1),
    "dropout": metalab.uniform(0.1, 0.5),
    "hidden": metalab.choice([64, 128, 256]),
    "layers": metalab.randint(1, 4),
    "shift": metalab.normal(0.0, 2.0),
}


def test_grid_is_iterable_sized_and_ordered():
    g = metalab.grid(learning_rate=[0.001, 0.01, 0.1], batch_size=[32, 64])
    assert len(g) == 6
    configs = list(g)
    assert configs == list(g)  # deterministic, re-iterable
    assert all(type(c) is dict for c in configs)
    assert configs[:3] == [
        {"learning_rate": 0.001, "batch_size": 32},
        {"learning_rate": 0.001, "batch_size": 64},
        {"learning_rate": 0.01, "batch_size": 32},
    ]


def test_random_is_deterministic_in_seed_and_respects_distributions():
    r = metalab.random(space=SPACE, n_trials=200, seed=123)
    assert len(r) == 200
    configs = list(r)
    assert len(configs) == 200
    assert configs == list(metalab.random(space=SPACE, n_trials=200, seed=123))
    assert configs != list(metalab.random(space=SPACE, n_trials=200, seed=124))
    for c in configs:
        assert set(c) == set(SPACE)
        assert 1e-4 <= c["lr"] < 1e-1 and type(c["lr"]) is float
        assert 0.1 <= c["dropout"] < 0.5
        assert c["hidden"] in (64, 128, 256) and type(c["hidden"]) is int
        assert 1 <= c["layers"] < 4 and type(c["layers"]) is int
        assert type(c["shift"]) is float
    assert {c["hidden"] for c in configs} == {64, 128, 256}
    assert {c["layers"] for c in configs} == {1, 2, 3}
    # log-uniform: about half the samples below the geometric midpoint 10**-2.5
    below = sum(c["lr"] < 10**-2.5 for c in configs)
    assert 60 < below < 140


def test_random_survives_pickling_with_same_configs():
    import pickle

    r = metalab.random(space=SPACE, n_trials=5, seed=1)
    first = list(r)
    assert list(pickle.loads(pickle.dumps(r))) == first


def test_manual_keeps_order_and_copies():
    src = [{"lr": 0.01, "epochs": 10}, {"lr": 0.001, "epochs": 50}]
    m = metalab.manual(src)
    assert len(m) == 2
    assert list(m) == src
    next(iter(m))["lr"] = 99  # mutating a yielded dict does not change the source
    assert list(m) == src


def test_concat_and_product():
    a = metalab.grid(x=[1, 2])
    b = metalab.manual([{"y": "u"}, {"y": "v"}, {"y": "w"}])
    s = a + b
    assert len(s) == 5
    assert list(s) == [{"x": 1}, {"x": 2}, {"y": "u"}, {"y": "v"}, {"y": "w"}]
    p = a * b
    assert len(p) == 6
    assert list(p) == [{"x": x, "y": y} for x in (1, 2) for y in "uvw"]
    nested = (a * b) + metalab.grid(z=[0])
    assert len(nested) == 7 and list(nested)[-1] == {"z": 0}
    assert len(list(nested.iter_json())) == 7


def test_product_key_clash_is_an_error():
    with pytest.raises(ParamSpaceError, match=r"\['x'\].*a \+ b"):
        metalab.grid(x=[1]) * metalab.manual([{"x": 2, "y": 3}])


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (lambda x: x, "function"),
        ({1, 2}, "set"),
        (object(), "object"),
        (datetime.datetime(2024, 1, 1), "datetime.datetime"),
        (b"bytes", "bytes"),
        (complex(1, 2), "complex"),
    ],
)
def test_non_json_values_name_key_and_type(value, type_name):
    with pytest.raises(ParamError, match=rf"'manual\[0\]\.model\.opt'.*type {type_name}\b"):
        metalab.Experiment(
            name="bad",
            operation=noop,
            params=metalab.manual([{"model": {"opt": value}}]),
        )
    with pytest.raises(ParamError, match=rf"'\w*\[1\]\.opt'.*type {type_name}\b"):
        metalab.Experiment(
            name="bad",
            operation=noop,
            params=[{"ok": 1}, {"opt": value}],
        )
    with pytest.raises(ParamError, match=rf"'opt\[1\]'.*type {type_name}\b"):
        metalab.grid(opt=[1, value])
    with pytest.raises(ParamError, match=type_name):
        metalab.random(space={"opt": value}, n_trials=1)
    with pytest.raises(ParamError, match=type_name):
        metalab.choice([1, value])


def test_errors_are_valueerrors_and_metalab_errors():
    with pytest.raises(ValueError):
        metalab.manual([{"x": {1, 2}}])
    with pytest.raises(metalab.MetalabError):
        metalab.manual([{"x": {1, 2}}])


def test_non_string_keys_are_rejected():
    with pytest.raises(ParamError, match=r"key 1 of type int.*'1'"):
        metalab.manual([{"model": {1: "a"}}])
    with pytest.raises(ParamError, match="key"):
        metalab.Experiment(name="bad", operation=noop, params=[{1: "a"}])
    # With string keys the same config is accepted
    assert list(metalab.manual([{"model": {"1": "a"}}])) == [{"model": {"1": "a"}}]


def test_deep_path_in_lists():
    with pytest.raises(ParamError, match=r"'manual\[0\]\.a\[1\]\.b'"):
        metalab.manual([{"a": [1, {"b": {3}}]}])


def test_numpy_scalars_become_python():
    m = metalab.manual(
        [
            {
                "i": np.int64(3),
                "f": np.float32(0.5),
                "b": np.bool_(True),
                "s": np.str_("x"),
                "arr": np.array([1, 2]),
            }
        ]
    )
    (c,) = list(m)
    assert c == {"i": 3, "f": 0.5, "b": True, "s": "x", "arr": [1, 2]}
    assert [type(c[k]) for k in ("i", "f", "b", "s")] == [int, float, bool, str]
    g = metalab.grid(n=np.array([1, 2], dtype="int32"), x=[np.float64(0.25)])
    assert list(g) == [{"n": 1, "x": 0.25}, {"n": 2, "x": 0.25}]
    assert type(next(iter(g))["n"]) is int
    # numpy and Python values give the same run ids
    e1 = metalab.Experiment(name="e", operation=noop, params=g)
    e2 = metalab.Experiment(name="e", operation=noop, params=metalab.grid(n=[1, 2], x=[0.25]))
    assert e1.plan()["run_id"].tolist() == e2.plan()["run_id"].tolist()


@pytest.mark.parametrize(
    "make",
    [
        lambda: metalab.grid(x=[]),
        lambda: metalab.grid(x="abc"),
        lambda: metalab.grid(x=5),
        lambda: metalab.random(space={}, n_trials=3),
        lambda: metalab.random(space={"x": metalab.uniform(0, 1)}, n_trials=0),
        lambda: metalab.manual({"x": 1}),
        lambda: metalab.uniform(1, 0),
        lambda: metalab.loguniform(0, 1),
        lambda: metalab.randint(3, 3),
        lambda: metalab.normal(0, -1),
        lambda: metalab.choice([]),
    ],
)
def test_malformed_sources(make):
    with pytest.raises(ParamSpaceError):
        make()


def test_descriptors_is_a_lazy_dask_frame():
    import dask.dataframe as dd

    exp = metalab.Experiment(
        name="desc",
        operation=noop,
        params=metalab.grid(a=[1, 2, 3], b=["x", "y"]),
        seeds=metalab.seeds(base=5, replicates=4),
    )
    ddf = exp.descriptors()
    assert isinstance(ddf, dd.DataFrame)
    assert {"run_id", "params", "replicate", "seed"} <= set(ddf.columns)
    df = ddf.compute()
    assert len(df) == len(exp) == 24
    assert df["run_id"].is_unique
    assert df["replicate"].tolist() == [0, 1, 2, 3] * 6
    params = [json.loads(p) for p in df["params"]]
    assert params == [c for c in metalab.grid(a=[1, 2, 3], b=["x", "y"]) for _ in range(4)]
    seeds = {r: int(metalab.SeedBundle(5, (r,))) for r in range(4)}
    assert df["seed"].tolist() == [seeds[r] for r in df["replicate"]]
    assert df.equals(exp.plan())
    assert len(exp.descriptors(npartitions=3).compute()) == 24


def test_experiment_accepts_list_and_dict_params():
    e = metalab.Experiment(name="e", operation=noop, params=[{"a": 1}, {"a": 2}])
    assert len(e) == 2
    e = metalab.Experiment(name="e", operation=noop, params={"a": 1})
    assert len(e) == 1
    with pytest.raises(ParamSpaceError):
        metalab.Experiment(name="e", operation=noop, params=42)
