"""Model selection: polynomial degree x ridge penalty, with replicates and a results plot.

Each replicate draws its own noisy training and validation sets from its seed, fits a
ridge-regularized polynomial with numpy, and records training and validation error.
Runs with the same replicate share their seed across settings (common random numbers),
so settings are compared on the same data. The summary averages over replicates and
the plot shows validation error (mean ± std) against the degree.

    uv run python examples/model_selection.py      # then: metalab report runs/model_selection
"""

import os

import numpy as np

import metalab

SMALL = os.environ.get("METALAB_EXAMPLE_SMALL") == "1"  # tiny sizes for the test suite


def target(x):
    return np.sin(2 * np.pi * x)


@metalab.operation(name="poly_ridge", version="1")
def fit_polynomial(context, params, seeds, capture):
    rng = seeds.numpy()
    n, noise = context["n_train"], context["noise"]
    x, xv = rng.uniform(0, 1, n), rng.uniform(0, 1, 500)
    y = target(x) + rng.normal(0, noise, n)
    yv = target(xv) + rng.normal(0, noise, 500)

    k = params["degree"] + 1
    X, Xv = np.vander(x, k, increasing=True), np.vander(xv, k, increasing=True)
    w = np.linalg.solve(X.T @ X + params["alpha"] * np.eye(k), X.T @ y)
    capture.metric("train_mse", float(np.mean((X @ w - y) ** 2)))
    capture.metric("val_mse", float(np.mean((Xv @ w - yv) ** 2)))


exp = metalab.Experiment(
    name="model_selection",
    version="1",
    context={"n_train": 30, "noise": 0.3},
    operation=fit_polynomial,
    params=metalab.grid(
        degree=[1, 3, 9] if SMALL else list(range(1, 13)),
        alpha=[1e-6, 1e-2] if SMALL else [1e-6, 1e-3, 1e-1],
    ),
    seeds=metalab.seeds(base=7, replicates=2 if SMALL else 5),
)


if __name__ == "__main__":
    result = metalab.run(exp)
    summary = result.summary(group_by=["degree", "alpha"], metrics=["train_mse", "val_mse"])
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    best = summary.loc[summary["val_mse_mean"].idxmin()]
    print(
        f"\nbest: degree={int(best['degree'])}, alpha={best['alpha']:g}, "
        f"validation MSE {best['val_mse_mean']:.4g} ± {best['val_mse_std']:.2g}"
    )
    # Validation error against degree, one line per alpha; the band is ± one std.
    result.plot(
        x="degree", y="val_mse", hue="alpha", band="std", logy=True, path="model_selection.png"
    )
    print("plot: model_selection.png")
