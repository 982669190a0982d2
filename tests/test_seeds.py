"""Seeds: SeedBundle streams built on numpy SeedSequence, replicates and derive()."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest

import metalab
from metalab import SeedBundle


def test_numpy_gives_a_generator_reproducibly():
    b = SeedBundle(42, (0,))
    g = b.numpy()
    assert isinstance(g, np.random.Generator)
    x = g.random(5)
    assert np.array_equal(SeedBundle(42, (0,)).numpy().random(5), x)
    assert np.array_equal(b.numpy().random(5), x)  # each call starts the same stream


def test_rng_gives_a_stdlib_random():
    b = SeedBundle(42, (1,))
    r = b.rng()
    assert isinstance(r, random.Random)
    first = [r.random() for _ in range(4)]
    again = SeedBundle(42, (1,)).rng()
    assert [again.random() for _ in range(4)] == first
    other = SeedBundle(42, (2,)).rng()
    assert [other.random() for _ in range(4)] != first


def test_replicates_equal_seedsequence_spawn():
    n = 5
    children = np.random.SeedSequence(42).spawn(n)
    for r in range(n):
        ours = SeedBundle(42, (r,)).numpy().integers(0, 2**62, 8)
        ref = np.random.Generator(np.random.PCG64(children[r])).integers(0, 2**62, 8)
        assert np.array_equal(ours, ref)
    plan = metalab.seeds(base=42, replicates=n)
    assert [plan.bundle(r) for r in range(n)] == [SeedBundle(42, (r,)) for r in range(n)]


def test_replicates_are_different_streams():
    draws = [tuple(SeedBundle(7, (r,)).numpy().integers(0, 2**62, 4)) for r in range(20)]
    assert len(set(draws)) == 20
    ints = [int(SeedBundle(7, (r,))) for r in range(20)]
    assert len(set(ints)) == 20
    assert int(SeedBundle(7, (0,))) != int(SeedBundle(8, (0,)))


def test_derive_is_deterministic_and_distinct():
    b = SeedBundle(42, (3,))
    model, data = b.derive("model"), b.derive("data_split")
    assert isinstance(model, SeedBundle)
    assert model == b.derive("model") and int(model) == int(b.derive("model"))
    assert model != data
    assert int(model) != int(data) != int(b)
    assert not np.array_equal(model.numpy().random(4), data.numpy().random(4))
    # Same name under another replicate is another stream; nesting works.
    assert int(SeedBundle(42, (4,)).derive("model")) != int(model)
    assert int(model.derive("init")) != int(model)
    # Pinned: derive does not depend on Python's salted hash() (checked across processes
    # in test_hashing.py); the spawn key word is the first 4 bytes of sha256(name).
    import hashlib

    word = int.from_bytes(hashlib.sha256(b"model").digest()[:4], "little")
    assert model.spawn_key == (3, word)
    with pytest.raises(TypeError):
        b.derive(3)  # type: ignore[arg-type]


def test_int_bundle():
    b = SeedBundle(42, (0,))
    v = int(b)
    assert isinstance(v, int) and 0 <= v < 2**63
    assert v == int(SeedBundle(42, (0,)))
    assert int(np.random.SeedSequence(42, spawn_key=(0,)).generate_state(1, np.uint64)[0]) >> 1 == v
    assert random.Random(v).random() == b.rng().random()


def test_bundle_pickles():
    b = SeedBundle(42, (2,)).derive("x")
    int(b)
    c = pickle.loads(pickle.dumps(b))
    assert c == b and int(c) == int(b)


def test_seeds_validation():
    assert metalab.seeds(base=42, replicates=5).replicates == 5
    for bad in [
        dict(base=-1),
        dict(base=1.5),
        dict(base="1"),
        dict(replicates=0),
        dict(replicates=True),
    ]:
        with pytest.raises(metalab.ExperimentError):
            metalab.seeds(**bad)


def test_runs_get_their_replicate_bundle():
    @metalab.operation(name="draw")
    def draw(params, seeds, capture):
        capture.metric("u", float(seeds.numpy().random()))
        capture.metric("seed_int", int(seeds) % 1_000_000)
        capture.metric("model_u", seeds.derive("model").rng().random())

    exp = metalab.Experiment(
        name="seeds",
        operation=draw,
        params=metalab.grid(k=[1, 2]),
        seeds=metalab.seeds(base=42, replicates=3),
    )
    res = metalab.run(exp)
    df = res.table(as_dataframe=True)
    assert len(df) == 6
    for _, row in df.iterrows():
        b = SeedBundle(42, (int(row["replicate"]),))
        assert row["u"] == b.numpy().random()
        assert row["seed_int"] == int(b) % 1_000_000
        assert row["seed"] == int(b)
        assert row["model_u"] == b.derive("model").rng().random()
    # common random numbers: the same replicate sees the same stream in every config
    by_rep = df.groupby("replicate")["u"].nunique()
    assert (by_rep == 1).all()
    assert df.groupby("k")["u"].nunique().eq(3).all()
