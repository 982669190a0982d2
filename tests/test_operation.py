"""Operations: declared arguments, signature checks, returned metrics."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

import metalab
from metalab import OperationSignatureError
from metalab.operation import ALLOWED_ARGUMENTS


def _make(args: tuple[str, ...]):
    """An operation declaring exactly ``args`` that records what it received."""
    src = f"def op({', '.join(args)}):\n    return _record(locals())\n"

    def _record(received):
        Path("received.jsonl").open("a").write(
            json.dumps(
                {
                    "args": list(received),
                    "types": {k: type(v).__name__ for k, v in received.items()},
                }
            )
            + "\n"
        )

    ns: dict = {"_record": _record}
    exec(src, ns)
    return ns["op"]


SUBSETS = [
    combo
    for n in range(len(ALLOWED_ARGUMENTS) + 1)
    for subset in itertools.combinations(ALLOWED_ARGUMENTS, n)
    for combo in ([subset] if n < 2 else [subset, tuple(reversed(subset))])
]


@pytest.mark.parametrize("args", SUBSETS, ids=lambda a: "-".join(a) or "none")
def test_any_subset_in_any_order(args):
    op = metalab.operation(name="subset")(_make(args))
    assert op.wants == args
    exp = metalab.Experiment(name="subset", operation=op, params={"x": 1}, context={"c": 1})
    res = metalab.run(exp)
    assert res[0].status == "success", res[0].error
    (line,) = Path("received.jsonl").read_text().splitlines()
    got = json.loads(line)
    assert got["args"] == list(args)
    expected_types = {
        "context": "FrozenContext",
        "params": "dict",
        "seeds": "SeedBundle",
        "capture": "Capture",
    }
    assert got["types"] == {a: expected_types[a] for a in args}


@pytest.mark.parametrize(
    "src",
    [
        "def op(params, rng): pass",
        "def op(params, verbose=False): pass",
        "def op(*, config): pass",
        "def op(param): pass",
    ],
)
def test_unknown_argument_is_a_type_error_naming_allowed_names(src):
    ns: dict = {}
    exec(src, ns)
    with pytest.raises(TypeError) as info:
        metalab.operation(name="bad")(ns["op"])
    assert isinstance(info.value, OperationSignatureError)
    msg = str(info.value)
    for name in ALLOWED_ARGUMENTS:
        assert name in msg
    bad = src.split("(")[1].split(")")[0].replace("*, ", "").split(", ")[-1].split("=")[0]
    assert repr(bad) in msg


def test_varargs_are_rejected():
    with pytest.raises(TypeError, match="context, params, seeds, capture"):

        @metalab.operation
        def op(params, **kwargs):
            pass


def test_decorator_keeps_identity_and_callability():
    @metalab.operation(name="sq", version="2")
    def square(params, capture):
        """Square x."""
        return {"y": params["x"] ** 2}

    assert square.name == "sq" and square.version == "2"
    assert square.__doc__ == "Square x." and square.__name__ == "square"
    assert square(params={"x": 3}, capture=None) == {"y": 9}

    @metalab.operation
    def bare(params):
        pass

    assert bare.name == "bare" and bare.version == "0"


def test_returned_dict_of_numbers_is_recorded_as_metrics():
    import numpy as np

    @metalab.operation(name="ret")
    def op(params):
        return {"y": params["x"] * 2, "z": np.float64(0.5), "ok": True}

    exp = metalab.Experiment(name="ret", operation=op, params=metalab.grid(x=[1, 2]))
    res = metalab.run(exp)
    assert [r.metrics for r in res] == [
        {"y": 2, "z": 0.5, "ok": True},
        {"y": 4, "z": 0.5, "ok": True},
    ]
    df = res.table(as_dataframe=True)
    assert df["y"].tolist() == [2, 4]


def test_returned_non_dict_fails_the_run_with_a_clear_error():
    @metalab.operation(name="ret_bad")
    def op(params):
        return [1, 2]

    res = metalab.run(metalab.Experiment(name="ret_bad", operation=op))
    assert res[0].status == "failed"
    assert res[0].error["type"] == "CaptureTypeError"  # a metalab.CaptureTypeError (TypeError)
    assert "dict of numbers" in res[0].error["message"]


def test_plain_function_in_experiment_is_an_error():
    def op(params):
        pass

    with pytest.raises(metalab.ExperimentError, match=r"@metalab\.operation"):
        metalab.Experiment(name="plain", operation=op)
