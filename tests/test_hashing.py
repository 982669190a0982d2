"""Run identity: the documented recipe, its fast path, and stability across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import metalab
from metalab._hashing import (
    canonical_json,
    fingerprint,
    normalize_params,
    run_id,
    run_id_from_parts,
    run_id_prefix,
)

REPO = Path(__file__).resolve().parents[1]

# A fixed experiment whose run ids are pinned below.  If one of these literals changes,
# every existing store loses its resume/dedup history: change them only on purpose
# (and document the new recipe in docs/concepts.md).
PINNED_SCRIPT = textwrap.dedent(
    """
    import json
    import metalab

    @metalab.operation(name="pinned_op", version="2")
    def op(params, seeds):
        pass

    exp = metalab.Experiment(
        name="pinned",
        version="1.0",
        context={"dataset": "mnist", "sizes": [1, 2, 3]},
        operation=op,
        params=metalab.grid(lr=[0.1, 0.01], layers=[{"n": 2, "act": "relu"}]),
        seeds=metalab.seeds(base=7, replicates=2),
    )
    plan = exp.plan()
    print(json.dumps({
        "context": exp.context.fingerprint,
        "run_ids": plan["run_id"].tolist(),
        "seeds": plan["seed"].tolist(),
        "hash_of_str": hash("metalab"),
    }))
    """
)

PINNED_CONTEXT_FP = "bfccc0f4f8006056fff3b76c7db1afddb0e30fcb0098c6389039e681f96fe288"
PINNED_RUN_IDS = [
    "345d78b472b96566421f189814918007",
    "ba006b902c50469703b2797b6ae949a3",
    "d34a73e6a2d914a11db2b81d981f02dd",
    "f0a85b67b52dc2c93d5932bc33ac79ea",
]
PINNED_SEEDS = [1201125462, 3618983171] * 2


def _plan_in_subprocess(hashseed: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    out = subprocess.run(
        [sys.executable, "-c", PINNED_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pinned_plan() -> dict:
    ns: dict = {}
    lines = PINNED_SCRIPT.replace("print(json.dumps(", "RESULT = (").replace("}))", "})")
    exec(compile(lines, "<pinned>", "exec"), ns)
    return ns["RESULT"]


def test_run_ids_are_pinned():
    plan = _pinned_plan()
    assert plan["context"] == PINNED_CONTEXT_FP
    assert plan["run_ids"] == PINNED_RUN_IDS
    assert plan["seeds"] == PINNED_SEEDS


def test_pinned_recipe_by_hand():
    """The documented recipe, computed with nothing but hashlib and json."""
    import hashlib

    def dumps(o):
        return json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    ctx = hashlib.sha256(dumps({"dataset": "mnist", "sizes": [1, 2, 3]}).encode()).hexdigest()
    assert ctx == PINNED_CONTEXT_FP
    doc = {
        "context": ctx,
        "experiment": "pinned",
        "experiment_version": "1.0",
        "operation": "pinned_op",
        "operation_version": "2",
        "params": {"lr": 0.1, "layers": {"n": 2, "act": "relu"}},
        "seed": {"base": 7, "replicate": 0},
    }
    assert hashlib.sha256(dumps(doc).encode()).hexdigest()[:32] == PINNED_RUN_IDS[0]


def test_run_ids_identical_in_subprocesses_with_other_hash_seeds():
    here = _pinned_plan()
    a = _plan_in_subprocess("1")
    b = _plan_in_subprocess("12345")
    # The hash seeds really differ (so Python's salted hash() differs) ...
    assert a["hash_of_str"] != b["hash_of_str"]
    # ... and nothing metalab computes does.
    for other in (a, b):
        assert other["run_ids"] == here["run_ids"]
        assert other["context"] == here["context"]
        assert other["seeds"] == here["seeds"]


def test_plan_matches_reference_recipe():
    @metalab.operation(name="ref_op", version="3")
    def op(params):
        pass

    params = metalab.grid(a=[1, 2.5], b=["x", None]) + metalab.manual([{"c": {"d": [True]}}])
    exp = metalab.Experiment(
        name="ref",
        version="9",
        operation=op,
        params=params,
        seeds=metalab.seeds(base=11, replicates=3),
        context={"k": 1},
    )
    plan = exp.plan()
    expected = [
        run_id(
            context_fp=exp.context.fingerprint,
            experiment="ref",
            experiment_version="9",
            operation="ref_op",
            operation_version="3",
            params=p,
            base=11,
            replicate=r,
        )
        for p in params
        for r in range(3)
    ]
    assert plan["run_id"].tolist() == expected
    assert len(set(expected)) == len(expected) == 15


SAMPLE_PARAMS = [
    {},
    {"a": 1},
    {"a": 1.0},
    {"a": True},
    {"a": None},
    {"a": "é ✓ 漢字", "b": 'quote"and\\backslash'},
    {"nested": {"z": 1, "a": [1, 2, {"deep": None}]}, "b": -0.0},
    {"f": 1e-300, "g": 1.7976931348623157e308, "h": 0.1 + 0.2},
    {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")},
    {"list": [], "dict": {}, "bools": [True, False, None]},
    {"big": [2**70], "neg": -(2**40), "edge": 2**63 - 1, "low": -(2**63)},
    {"b": 2, "a": 1, "c": {"y": 1, "x": 2}},
    {"np": np.float32(0.5), "i": np.int64(3), "t": np.bool_(False)},
]


@pytest.mark.parametrize("params", SAMPLE_PARAMS, ids=range(len(SAMPLE_PARAMS)))
@pytest.mark.parametrize("replicate", [0, 3])
def test_fast_path_equals_reference(params, replicate):
    norm = normalize_params(params)
    parts = dict(
        context_fp="c" * 64,
        experiment="exp-é",
        experiment_version="1",
        operation="op",
        operation_version="0.1",
    )
    prefix = run_id_prefix(**parts)
    fast = run_id_from_parts(prefix, canonical_json(norm), 42, replicate)
    assert fast == run_id(**parts, params=norm, base=42, replicate=replicate)
    from metalab import _hashing

    bulk = getattr(_hashing, "run_ids_for", None)
    if bulk is not None:  # the bulk variant used by Experiment.plan
        assert bulk(prefix, [canonical_json(norm)] * 2, 42, replicate) == [fast, fast]
    assert len(fast) == 32 and int(fast, 16) >= 0


def test_grid_fast_json_equals_canonical_json():
    g = metalab.grid(z=[1, "é", None], a=[{"y": 1, "b": [1.5]}, True], m=[0.1])
    assert list(g.iter_json()) == [canonical_json(p) for p in g]


def test_every_part_of_the_recipe_changes_the_id():
    base = dict(
        context_fp="c",
        experiment="e",
        experiment_version="1",
        operation="o",
        operation_version="1",
        params={"a": 1},
        base=0,
        replicate=0,
    )
    ref = run_id(**base)
    for key, value in [
        ("context_fp", "d"),
        ("experiment", "f"),
        ("experiment_version", "2"),
        ("operation", "p"),
        ("operation_version", "2"),
        ("params", {"a": 2}),
        ("params", {"a": 1.0}),
        ("params", {"a": "1"}),
        ("base", 1),
        ("replicate", 1),
    ]:
        assert run_id(**{**base, key: value}) != ref, key


def test_canonical_json_is_key_order_independent():
    assert canonical_json({"b": 1, "a": {"d": 2, "c": 3}}) == '{"a":{"c":3,"d":2},"b":1}'
    assert canonical_json({"s": "é"}) == '{"s":"é"}'


def test_fingerprint_of_context_values():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    arr = np.arange(6, dtype="int64").reshape(2, 3)
    assert fingerprint({"x": arr}) == fingerprint({"x": arr.copy()})
    assert fingerprint({"x": arr}) != fingerprint({"x": arr.T.copy()})
    assert fingerprint({"x": b"abc"}) != fingerprint({"x": "abc"})


def test_no_salted_hash_in_identity_code():
    """Identity code never calls Python's salted hash() (only __hash__ methods may)."""
    import ast

    for rel in (
        "_hashing.py",
        "seeds.py",
        "context.py",
        "experiment.py",
        "operation.py",
        "params/sources.py",
        "params/distributions.py",
        "descriptors.py",
        "sweep/planning.py",
    ):
        tree = ast.parse((REPO / "metalab" / rel).read_text())
        allowed: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "__hash__":
                allowed.update(id(n) for n in ast.walk(node))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "hash"
            ):
                assert id(node) in allowed, f"{rel}:{node.lineno} calls hash()"


def test_concepts_doc_has_the_recipe_and_its_example_is_right():
    import re

    import metalab._hashing as h

    doc = (REPO / "docs" / "concepts.md").read_text()
    recipe = h.__doc__.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    assert recipe in doc
    code = [b for b in re.findall(r"```python\n(.*?)```", doc, flags=re.S) if "run_id =" in b]
    assert len(code) == 1
    ns: dict = {}
    exec(code[0], ns)

    @metalab.operation(name="train", version="1")
    def train(params):
        pass

    exp = metalab.Experiment(
        name="my_exp",
        operation=train,
        params={"lr": 0.1},
        context={"dataset": "mnist"},
        seeds=metalab.seeds(base=42),
    )
    assert exp.plan()["run_id"].tolist() == [ns["run_id"]]


def test_every_tag_the_context_encoder_emits_is_reserved():
    """A tag missing from RESERVED_KEYS would let a user dict collide with tagged values."""
    import dataclasses

    import pandas as pd

    from metalab._hashing import RESERVED_KEYS, _fingerprint_value

    @dataclasses.dataclass(frozen=True)
    class D:
        a: int = 1

    @metalab.context_spec
    class S:
        a: int = 1

    class WithFp:
        fingerprint = "f" * 64

    values = [
        b"x",
        bytearray(b"x"),
        Path("p"),
        np.arange(3),
        np.zeros(2, dtype=[("a", "i4")]),
        np.ma.masked_array([1, 2], mask=[0, 1]),
        np.float64(1.5),
        pd.DataFrame({"a": [1]}),
        pd.Series([1]),
        pd.Index([1]),
        D(),
        S(),
        WithFp(),
        {"__path__": "p"},
    ]

    def dunder_keys(obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k.startswith("__") and k.endswith("__"):
                    yield k
                yield from dunder_keys(v)
        elif isinstance(obj, list):
            for v in obj:
                yield from dunder_keys(v)

    emitted = {k for v in values for k in dunder_keys(_fingerprint_value(v, "v"))}
    assert emitted <= RESERVED_KEYS, emitted - RESERVED_KEYS
    assert "__spec__" in RESERVED_KEYS  # the context_spec document's tag
