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


def test_int_bundle_is_a_32_bit_seed():
    b = SeedBundle(42, (0,))
    v = int(b)
    assert isinstance(v, int) and 0 <= v < 2**32
    assert v == int(SeedBundle(42, (0,))) == b.__index__()
    assert v == int(np.random.SeedSequence(42, spawn_key=(0,)).generate_state(1, np.uint32)[0])
    # Every replicate and derived bundle stays in range (a 63-bit value did not).
    ints = [int(SeedBundle(base, (r,))) for base in (0, 7, 2**40) for r in range(200)]
    ints += [int(SeedBundle(42, (r,)).derive(n)) for r in range(50) for n in ("model", "split")]
    assert all(0 <= i < 2**32 for i in ints) and len(set(ints)) == len(ints)
    assert max(ints) >= 2**31  # the whole unsigned range is used, not 31 bits


def test_streams_are_pinned():
    """numpy(), rng() and derive() give the streams they always gave (32-bit int() or not)."""
    b = SeedBundle(42, (1,))
    assert b.numpy().random() == 0.4674907799518424
    assert b.rng().random() == 0.3811881550920585
    assert b.derive("model").numpy().random() == 0.5633422343851391
    assert b.derive("model").rng().random() == 0.12337497651680596
    assert int(SeedBundle(7, (0,))) == 1201125462 and int(SeedBundle(7, (1,))) == 3618983171


def test_random_state_is_a_legacy_numpy_random_state():
    b = SeedBundle(42, (0,))
    rs = b.random_state()
    assert type(rs) is np.random.RandomState
    first = rs.random_sample(5)
    assert np.array_equal(SeedBundle(42, (0,)).random_state().random_sample(5), first)
    assert np.array_equal(b.random_state().random_sample(5), first)  # each call: same start
    assert not np.array_equal(SeedBundle(42, (1,)).random_state().random_sample(5), first)
    # Seeded from the whole SeedSequence through MT19937 (documented), not from int(b).
    ref = np.random.RandomState(np.random.MT19937(np.random.SeedSequence(42, spawn_key=(0,))))
    assert np.array_equal(ref.random_sample(5), first)
    assert not np.array_equal(np.random.RandomState(int(b)).random_sample(5), first)


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


# --- libraries: the calls docs/seeds.md tells users to make -------------------------------------
def test_scikit_learn_accepts_int_and_random_state():
    from sklearn.utils import check_random_state

    for r in range(100):
        b = SeedBundle(42, (r,))
        assert check_random_state(int(b)).random_sample() == np.random.RandomState(int(b)).rand()
        assert check_random_state(b.random_state()).rand() == b.random_state().rand()
    # What docs/seeds.md warns about: a Generator is refused by scikit-learn.
    with pytest.raises(ValueError, match="cannot be used to seed"):
        check_random_state(SeedBundle(42, (0,)).numpy())


@metalab.operation(name="sk", version="1")
def sk_fit(params, seeds, capture):
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    X, y = make_classification(n_samples=200, n_features=8, random_state=0)
    split_seed = int(seeds) if params["how"] == "int" else seeds.random_state()
    X_tr, X_te, y_tr, _ = train_test_split(X, y, test_size=0.3, random_state=split_seed)
    model_seed = int(seeds) if params["how"] == "int" else seeds.derive("model").random_state()
    model = RandomForestClassifier(n_estimators=5, max_features=2, random_state=model_seed)
    model.fit(X_tr, y_tr)
    capture.metric("split", float(X_te[:, 0].sum()))
    capture.metric("proba", float(model.predict_proba(X_te)[:, 1].sum()))


def test_scikit_learn_results_reproduce_and_differ_across_replicates(tmp_path):
    exp = metalab.Experiment(
        "sk", sk_fit, params=metalab.grid(how=["int", "random_state"]), seeds=metalab.seeds(3, 4)
    )
    first = metalab.run(exp, store=tmp_path / "a").table(as_dataframe=True)
    again = metalab.run(exp, store=tmp_path / "b").table(as_dataframe=True)
    assert len(first) == 8 and (first["status"] == "success").all()
    cols = ["run_id", "seed", "split", "proba"]
    a, b = first[cols].sort_values("run_id"), again[cols].sort_values("run_id")
    assert a.reset_index(drop=True).equals(b.reset_index(drop=True))  # bit for bit
    for _how, g in first.groupby("how"):
        assert g["split"].nunique() == 4 and g["proba"].nunique() == 4  # replicates differ
    assert (first["seed"] == [int(SeedBundle(3, (r,))) for r in first["replicate"]]).all()


@pytest.mark.parametrize(
    "module, call",
    [
        ("torch", lambda m, s: m.Generator().manual_seed(s).initial_seed() == s),
        ("jax", lambda m, s: m.random.key_data(m.random.key(s)).shape[-1] == 2),
        ("tensorflow", lambda m, s: m.random.Generator.from_seed(s) is not None),
    ],
)
def test_other_libraries_accept_int_seeds(module, call):
    lib = pytest.importorskip(module, reason=f"{module} is not installed here")
    for r in (0, 1, 2):
        assert call(lib, int(SeedBundle(2**40, (r,))))
