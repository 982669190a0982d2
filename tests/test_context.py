"""Contexts: read-only dicts, @context_spec dataclasses, stable fingerprints."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import metalab
from metalab import ContextError, FrozenContext, FrozenContextError

REPO = Path(__file__).resolve().parents[1]


@metalab.operation(name="read_ctx")
def read_ctx(context, capture):
    capture.metric("n", len(context["items"]))


def test_dict_becomes_frozen_context():
    exp = metalab.Experiment(
        name="ctx",
        operation=read_ctx,
        context={"items": [1, 2], "cfg": {"a": {"b": 1}}},
    )
    ctx = exp.context
    assert isinstance(ctx, FrozenContext)
    assert ctx["items"] == (1, 2) and ctx.cfg["a"]["b"] == 1
    assert ctx.to_dict() == {"items": [1, 2], "cfg": {"a": {"b": 1}}}
    assert len(ctx.fingerprint) == 64


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c.__setitem__("x", 1),
        lambda c: c.__delitem__("items"),
        lambda c: setattr(c, "items", 3),
        lambda c: delattr(c, "items"),
        lambda c: c.update(x=1),
        lambda c: c.pop("items"),
        lambda c: c.setdefault("x", 1),
        lambda c: c.clear(),
        lambda c: c["cfg"].__setitem__("new", 1),
        lambda c: c["cfg"]["a"].__setitem__("b", 2),
        lambda c: c["cfg"]["a"].update(b=2),
    ],
)
def test_mutation_raises(mutate):
    ctx = FrozenContext({"items": [1, 2], "cfg": {"a": {"b": 1}}})
    fp = ctx.fingerprint
    with pytest.raises(FrozenContextError, match="read-only"):
        mutate(ctx)
    assert ctx.to_dict() == {"items": [1, 2], "cfg": {"a": {"b": 1}}}
    assert ctx.fingerprint == fp


def test_nested_sequences_and_arrays_are_read_only():
    ctx = FrozenContext({"items": [1, [2, 3]], "arr": np.arange(3)})
    assert isinstance(ctx["items"], tuple) and isinstance(ctx["items"][1], tuple)
    with pytest.raises(ValueError, match="read-only"):
        ctx["arr"][0] = 5


def test_frozen_context_errors_are_metalab_errors():
    ctx = FrozenContext({"a": 1})
    with pytest.raises(TypeError):
        ctx["a"] = 2
    with pytest.raises(metalab.MetalabError):
        ctx["a"] = 2


def test_fingerprint_depends_on_content_only():
    a = FrozenContext({"x": 1, "y": [1, 2]})
    b = FrozenContext({"y": [1, 2], "x": 1})
    assert a.fingerprint == b.fingerprint and a == b
    assert FrozenContext({"x": 2, "y": [1, 2]}).fingerprint != a.fingerprint
    c = pickle.loads(pickle.dumps(a))
    assert isinstance(c, FrozenContext) and c.fingerprint == a.fingerprint


@metalab.context_spec
class DataContext:
    dataset_path: str
    vocab_size: int = 10000
    tags: list = dataclasses.field(default_factory=list)


def test_context_spec_is_a_frozen_dataclass_with_fingerprint():
    ctx = DataContext(dataset_path="data/train.csv")
    assert dataclasses.is_dataclass(ctx)
    assert ctx.vocab_size == 10000
    fp = ctx.fingerprint
    assert isinstance(fp, str) and len(fp) == 64
    assert DataContext(dataset_path="data/train.csv").fingerprint == fp
    assert DataContext(dataset_path="data/other.csv").fingerprint != fp
    assert DataContext(dataset_path="data/train.csv", vocab_size=5).fingerprint != fp
    with pytest.raises(FrozenContextError, match=r"dataclasses\.replace"):
        ctx.vocab_size = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.dataset_path = "x"  # type: ignore[misc]
    with pytest.raises(FrozenContextError):
        del ctx.vocab_size
    assert dataclasses.replace(ctx, vocab_size=3).vocab_size == 3
    assert ctx.fingerprint == fp
    c = pickle.loads(pickle.dumps(ctx))
    assert c == ctx and c.fingerprint == fp


def test_context_spec_freezes_mutable_fields():
    ctx = DataContext(dataset_path="d", tags=["a", {"k": "v"}])
    fp = ctx.fingerprint
    assert ctx.tags == ("a", FrozenContext({"k": "v"}))
    with pytest.raises(AttributeError):
        ctx.tags.append("b")  # type: ignore[attr-defined]
    with pytest.raises(FrozenContextError):
        ctx.tags[1]["k"] = "w"
    assert ctx.fingerprint == fp


def test_context_spec_keeps_user_post_init():
    @metalab.context_spec
    class Checked:
        n: int

        def __post_init__(self):
            if self.n < 0:
                raise ValueError("n must be >= 0")

    assert Checked(n=1).n == 1
    with pytest.raises(ValueError, match="n must be"):
        Checked(n=-1)


SPEC_SCRIPT = textwrap.dedent(
    """
    import metalab

    @metalab.context_spec
    class DataContext:
        dataset_path: str
        vocab_size: int = 10000

    @metalab.operation(name="op")
    def op(context):
        pass

    exp = metalab.Experiment(
        name="nlp_exp", context=DataContext(dataset_path="data/train.csv"), operation=op,
        params=metalab.grid(hidden=[64, 128]), seeds=metalab.seeds(base=42),
    )
    print(exp.context.fingerprint, hash("x"), *exp.plan()["run_id"])
    """
)


def test_context_spec_fingerprint_is_stable_across_processes():
    outs = []
    for seed in ("0", "99"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", SPEC_SCRIPT],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            check=True,
        )
        outs.append(proc.stdout.split())
    assert outs[0][1] != outs[1][1]  # the salted hash differs
    assert outs[0][0] == outs[1][0]
    assert outs[0][2:] == outs[1][2:]
    ns: dict = {}
    exec(SPEC_SCRIPT.replace("print(", "result = ("), ns)
    assert ns["exp"].context.fingerprint == outs[0][0]


class Opaque:
    pass


@pytest.mark.parametrize(
    "context",
    [
        {"model": Opaque()},
        {"fn": lambda x: x},
        {"nested": {"s": {1, 2}}},
        {1: "non-string key"},
    ],
)
def test_unfingerprintable_context_is_a_context_error(context):
    with pytest.raises(ContextError, match="context"):
        metalab.Experiment(name="bad", operation=read_ctx, context=context)


def test_context_spec_with_unfingerprintable_field():
    @metalab.context_spec
    class Holder:
        obj: object

    with pytest.raises(ContextError, match="fingerprint"):
        metalab.Experiment(name="bad", operation=read_ctx, context=Holder(obj=Opaque()))


def test_context_must_be_dict_or_spec():
    with pytest.raises(ContextError, match="context_spec"):
        metalab.Experiment(name="bad", operation=read_ctx, context=[1, 2])


def test_fingerprintable_values():
    import pandas as pd

    ctx = FrozenContext(
        {
            "arr": np.arange(4.0),
            "df": pd.DataFrame({"a": [1, 2]}),
            "path": Path("/data/x"),
            "raw": b"\x00\x01",
            "spec": DataContext(dataset_path="p"),
        }
    )
    same = FrozenContext(
        {
            "arr": np.arange(4.0),
            "df": pd.DataFrame({"a": [1, 2]}),
            "path": Path("/data/x"),
            "raw": b"\x00\x01",
            "spec": DataContext(dataset_path="p"),
        }
    )
    assert ctx.fingerprint == same.fingerprint
    other = FrozenContext({**same.to_dict(), "df": pd.DataFrame({"a": [1, 3]})})
    assert other.fingerprint != ctx.fingerprint


def test_context_reaches_the_operation_and_the_run_id():
    exp1 = metalab.Experiment(name="ctx", operation=read_ctx, context={"items": [1, 2, 3]})
    exp2 = metalab.Experiment(name="ctx", operation=read_ctx, context={"items": [1, 2]})
    assert exp1.plan()["run_id"].tolist() != exp2.plan()["run_id"].tolist()
    res = metalab.run(exp1)
    assert res[0].metrics == {"n": 3}
    manifest = json.loads(Path("runs/ctx/manifest.json").read_text())
    assert manifest["context_fingerprint"] == exp1.context.fingerprint


@pytest.mark.cluster
def test_context_spec_on_cluster_workers(client):
    """A context_spec instance defined in a test module reaches workers intact."""
    from metalab import DaskExecutor

    @metalab.operation(name="ctx_remote")
    def op(context, capture):
        capture.metric("vocab", context.vocab_size)
        capture.metric("n_tags", len(context.tags))
        capture.metric("same_fp", context.fingerprint == expected_fp)
        try:
            context.vocab_size = 1
        except FrozenContextError:
            capture.metric("frozen", True)

    ctx = DataContext(dataset_path="remote.csv", vocab_size=7, tags=["a", "b"])
    expected_fp = ctx.fingerprint
    exp = metalab.Experiment(
        name="ctx_remote", operation=op, context=ctx, params=metalab.grid(i=[0, 1, 2])
    )
    res = metalab.run(exp, executor=DaskExecutor(client))
    assert [r.status for r in res] == ["success"] * 3, [r.error for r in res]
    for r in res:
        assert r.metrics == {"vocab": 7, "n_tags": 2, "same_fp": True, "frozen": True}
