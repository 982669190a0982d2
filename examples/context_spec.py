"""A context spec sharing a dataset: every run reads the same frozen, fingerprinted data.

``@metalab.context_spec`` turns a class into a frozen dataclass with a stable
``fingerprint`` that enters every run id: change the dataset and resume runs
everything again; keep it and resume skips what is done. The context is built once and
shipped to each worker once (not once per run).

    uv run python examples/context_spec.py
"""

import functools
import os

import numpy as np

import metalab

SMALL = os.environ.get("METALAB_EXAMPLE_SMALL") == "1"  # tiny sizes for the test suite


@metalab.context_spec
class Dataset:
    """A synthetic regression dataset, described by the few values that define it."""

    n_samples: int = 2000
    n_features: int = 20
    noise: float = 0.5
    seed: int = 0

    def load(self):
        return _generate(self)


@functools.lru_cache(maxsize=4)
def _generate(spec):
    """Build the data once per process (the spec is hashable, so it is the cache key)."""
    rng = np.random.default_rng(spec.seed)
    X = rng.normal(size=(spec.n_samples, spec.n_features))
    w = rng.normal(size=spec.n_features) * (rng.random(spec.n_features) < 0.3)
    y = X @ w + rng.normal(0, spec.noise, spec.n_samples)
    return X, y


@metalab.operation(name="ridge_cv", version="1")
def ridge(context, params, seeds, capture):
    X, y = context.load()
    rng = seeds.numpy()
    order = rng.permutation(len(y))  # each replicate: another train/validation split
    cut = int(0.7 * len(y))
    tr, va = order[:cut], order[cut:]
    A = X[tr].T @ X[tr] + params["alpha"] * np.eye(X.shape[1])
    w = np.linalg.solve(A, X[tr].T @ y[tr])
    capture.metric("val_mse", float(np.mean((X[va] @ w - y[va]) ** 2)))


data = Dataset(n_samples=300 if SMALL else 2000)

exp = metalab.Experiment(
    name="context_spec",
    version="1",
    context=data,
    operation=ridge,
    params=metalab.grid(alpha=[0.01, 1.0, 100.0] if SMALL else [0.01, 0.1, 1, 10, 100, 1000]),
    seeds=metalab.seeds(base=1, replicates=2 if SMALL else 4),
)


if __name__ == "__main__":
    print(f"dataset fingerprint {data.fingerprint[:16]}... ({data})")
    result = metalab.run(exp)
    print(
        result.summary(group_by="alpha").to_string(index=False, float_format=lambda v: f"{v:.4g}")
    )
