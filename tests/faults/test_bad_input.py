"""Every bad input of issue 5 gets a metalab error naming the problem and the fix."""

from __future__ import annotations

import datetime
import threading

import pytest

import metalab
from metalab.errors import (
    ContextError,
    ExperimentError,
    OperationSignatureError,
    ParamError,
    StoreError,
)


@metalab.operation(name="ok")
def ok(params, capture):
    capture.metric("y", 1)


def _exp(params=None, **kw) -> metalab.Experiment:
    return metalab.Experiment(
        name=kw.pop("name", "b"),
        operation=ok,
        params=params if params is not None else metalab.grid(x=[1]),
        **kw,
    )


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "path", "kind"),
    [
        ({"a": {"f": lambda x: x}}, "manual[0].a.f", "function"),
        ({"a": [1, {2, 3}]}, "manual[0].a[1]", "set"),
        ({"o": Opaque()}, "manual[0].o", "Opaque"),
        ({"when": datetime.datetime(2024, 1, 1)}, "manual[0].when", "datetime"),
    ],
    ids=["lambda", "set", "object", "datetime"],
)
def test_unserializable_params_name_the_key_path(value, path, kind):
    with pytest.raises(ParamError) as info:
        _exp(metalab.manual([value]))
    msg = str(info.value)
    assert repr(path) in msg and kind in msg and "JSON" in msg


def test_unserializable_grid_value_names_the_key():
    with pytest.raises(ParamError, match=r"'a\[0\]'.*set"):
        _exp(metalab.grid(a=[{1, 2}]))


@pytest.mark.parametrize("params", [{1: "x"}, {"a": {(1, 2): "x"}}, {"a": {None: 1}}])
def test_non_string_dict_keys_are_rejected(params):
    with pytest.raises(ParamError, match="keys must be strings"):
        _exp(metalab.manual([params]))


def test_int_and_str_keys_never_collide_silently(tmp_path):
    with pytest.raises(ParamError, match=r"write '1' instead"):
        _exp(metalab.manual([{"a": {1: "x"}}, {"a": {"1": "x"}}]))
    # With string keys, the two configurations stay distinct runs.
    exp = _exp(metalab.manual([{"a": {"1": "x"}}, {"a": {"2": "x"}}]))
    assert len(set(exp.plan()["run_id"])) == 2


def test_unknown_operation_argument_names():
    def bad(params, learning_rate):
        pass

    with pytest.raises(OperationSignatureError) as info:
        metalab.operation(bad)
    msg = str(info.value)
    assert "'learning_rate'" in msg and "context, params, seeds, capture" in msg


def test_store_path_that_is_a_file(tmp_path):
    f = tmp_path / "results.csv"
    f.write_text("x\n")
    with pytest.raises(StoreError, match="is a file, not a folder") as info:
        metalab.run(_exp(), store=f)
    assert str(f) in str(info.value)
    assert f.read_text() == "x\n"  # untouched
    with pytest.raises(StoreError, match="is a file"):
        metalab.load_results(f)


@pytest.mark.parametrize("name", ["../evil", "a/b", "", " ", ".hidden", "x\0y", "a" * 200, 42])
def test_unsafe_experiment_names(name):
    with pytest.raises(ExperimentError, match="not safe as a folder name") as info:
        _exp(name=name)
    assert "e.g. name=" in str(info.value)


@pytest.mark.parametrize(
    ("context", "what"),
    [
        ({"lock": threading.Lock()}, "context.lock"),
        ({"f": lambda: 1}, "context.f"),
        ({"gen": (i for i in range(3))}, "context.gen"),
        ({"deep": {"obj": Opaque()}}, "context.deep.obj"),
    ],
    ids=["lock", "lambda", "generator", "nested-object"],
)
def test_context_that_cannot_be_fingerprinted(context, what):
    with pytest.raises(ContextError, match="cannot be fingerprinted") as info:
        _exp(context=context)
    assert repr(what) in str(info.value) and "fingerprint" in str(info.value)


def test_context_of_unsupported_type():
    with pytest.raises(ContextError, match="context must be a dict"):
        _exp(context=Opaque())


def test_bad_run_options_fail_before_any_work(tmp_path):
    with pytest.raises(ExperimentError, match="retries must be an int"):
        metalab.run(_exp(), store=tmp_path / "s", retries=-1)
    with pytest.raises(ExperimentError, match="timeout must be"):
        metalab.run(_exp(), store=tmp_path / "s", timeout="1m")
    with pytest.raises(ExperimentError, match=r"takes a metalab\.Experiment"):
        metalab.run("not an experiment")
    assert not (tmp_path / "s").exists()
