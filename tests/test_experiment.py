"""Experiment: validation, size, identity inputs and the plan."""

from __future__ import annotations

import pytest

import metalab
from metalab import ExperimentError


@metalab.operation(name="op", version="1")
def op(params, seeds):
    pass


def _exp(**kw):
    base = dict(
        name="exp",
        operation=op,
        params=metalab.grid(a=[1, 2, 3]),
        seeds=metalab.seeds(base=1, replicates=2),
    )
    return metalab.Experiment(**{**base, **kw})


def test_len_and_repr():
    exp = _exp()
    assert len(exp) == 6
    assert "exp" in repr(exp) and "runs=6" in repr(exp)


def test_defaults():
    exp = metalab.Experiment(name="d", operation=op)
    assert len(exp) == 1
    assert exp.seeds.base == 0 and exp.seeds.replicates == 1
    assert dict(exp.context) == {}
    assert exp.plan()["params"].tolist() == ["{}"]


@pytest.mark.parametrize("name", ["", "a/b", "../up", ".hidden", "with space", None, 3, "a..b"])
def test_unsafe_names_are_rejected_with_a_suggestion(name):
    with pytest.raises(ExperimentError, match="name="):
        _exp(name=name)


def test_seeds_must_be_a_seed_plan():
    with pytest.raises(ExperimentError, match=r"metalab.seeds\(base"):
        _exp(seeds=42)


def test_operation_must_be_decorated():
    with pytest.raises(ExperimentError, match=r"@metalab\.operation"):
        _exp(operation=lambda params: None)
    with pytest.raises(ExperimentError):
        _exp(operation="op")


def test_every_identity_input_changes_run_ids():
    ids = set(_exp().plan()["run_id"])

    @metalab.operation(name="op", version="2")
    def op_v2(params, seeds):
        pass

    @metalab.operation(name="other", version="1")
    def other(params, seeds):
        pass

    variants = [
        _exp(name="exp2"),
        _exp(version="2"),
        _exp(operation=op_v2),
        _exp(operation=other),
        _exp(context={"k": 1}),
        _exp(seeds=metalab.seeds(base=2, replicates=2)),
    ]
    for v in variants:
        assert not ids & set(v.plan()["run_id"]), repr(v)
    # more replicates keep the ids of the replicates that already existed
    more = set(_exp(seeds=metalab.seeds(base=1, replicates=3)).plan()["run_id"])
    assert ids < more and len(more) == 9
    # the same definition gives the same ids
    assert set(_exp().plan()["run_id"]) == ids


def test_same_params_in_two_sources_share_a_run_id():
    exp = _exp(params=metalab.grid(a=[1]) + metalab.manual([{"a": 1}]))
    plan = exp.plan()
    assert len(plan) == 2 and plan["run_id"].is_unique
    assert plan["replicate"].tolist() == [0, 1]


def test_manifest():
    exp = _exp(description="test")
    m = exp.manifest()
    assert m["experiment"] == "exp" and m["operation"] == "op" and m["operation_version"] == "1"
    assert m["runs"] == 6 and m["seeds"] == {"base": 1, "replicates": 2}
    assert m["context_fingerprint"] == exp.context.fingerprint
    assert m["params"]["kind"] == "grid"


def test_user_defined_source_is_validated():
    class Squares(metalab.ParamSource):
        def __iter__(self):
            for i in range(3):
                yield {"x": i * i}

        def __len__(self):
            return 3

    exp = _exp(params=Squares())
    assert len(exp) == 6
    assert list(exp.params) == [{"x": 0}, {"x": 1}, {"x": 4}]

    class Bad(Squares):
        def __iter__(self):
            yield {"x": object()}

    with pytest.raises(metalab.ParamError, match="object"):
        _exp(params=Bad())
