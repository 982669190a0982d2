"""Random search: 30 draws of kernel ridge regression hyperparameters, 2 replicates each.

``metalab.random`` draws configurations from distributions with its own seed, so the
same search is planned again on every run (and a resumed search skips what is done).

    uv run python examples/random_search.py
"""

import os

import numpy as np

import metalab

SMALL = os.environ.get("METALAB_EXAMPLE_SMALL") == "1"  # tiny sizes for the test suite


@metalab.operation(name="kernel_ridge", version="1")
def kernel_ridge(params, seeds, capture):
    rng = seeds.numpy()
    x, xv = rng.uniform(-3, 3, 80), rng.uniform(-3, 3, 300)
    y = np.sinc(x) + rng.normal(0, 0.1, x.size)
    yv = np.sinc(xv) + rng.normal(0, 0.1, xv.size)

    def kernel(a, b):
        d2 = (a[:, None] - b[None, :]) ** 2
        if params["kernel"] == "rbf":
            return np.exp(-params["gamma"] * d2)
        return 1 / (1 + params["gamma"] * d2)  # Cauchy

    coef = np.linalg.solve(kernel(x, x) + params["alpha"] * np.eye(x.size), y)
    capture.metric("val_mse", float(np.mean((kernel(xv, x) @ coef - yv) ** 2)))


exp = metalab.Experiment(
    name="random_search",
    version="1",
    operation=kernel_ridge,
    params=metalab.random(
        space={
            "gamma": metalab.loguniform(1e-2, 1e2),
            "alpha": metalab.loguniform(1e-6, 1.0),
            "kernel": metalab.choice(["rbf", "cauchy"]),
        },
        n_trials=6 if SMALL else 30,
        seed=11,
    ),
    seeds=metalab.seeds(base=0, replicates=2),
)


if __name__ == "__main__":
    result = metalab.run(exp)
    summary = result.summary(group_by=["kernel", "gamma", "alpha"], metrics=["val_mse"])
    top = summary.sort_values("val_mse_mean").head(5)
    print(f"{len(result)} runs; the 5 best of {len(summary)} configurations:")
    print(top.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
