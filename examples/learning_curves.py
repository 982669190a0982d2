"""Learning curves: logistic regression by gradient descent, loss recorded at every step.

``capture.metric(name, value, step=i)`` records a series; the run's table shows the
last value and ``run.metric_series(name)`` returns the whole curve.

    uv run python examples/learning_curves.py
"""

import os

import numpy as np

import metalab

SMALL = os.environ.get("METALAB_EXAMPLE_SMALL") == "1"  # tiny sizes for the test suite
EPOCHS = 10 if SMALL else 100


def make_data(rng, n=400, d=5):
    """Two overlapping Gaussian classes."""
    y = rng.integers(0, 2, n)
    X = rng.normal(0, 1, (n, d)) + (2 * y[:, None] - 1) * 0.8
    return X, y


@metalab.operation(name="logreg_gd", version="1")
def train(params, seeds, capture):
    rng = seeds.numpy()
    X, y = make_data(rng)
    Xv, yv = make_data(rng)
    w = np.zeros(X.shape[1])
    for epoch in range(params["epochs"]):
        p = 1 / (1 + np.exp(-X @ w))
        loss = -np.mean(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12))
        capture.metric("train_loss", float(loss), step=epoch)
        w -= params["lr"] * X.T @ (p - y) / len(y)
        if epoch % 5 == 4 or epoch == params["epochs"] - 1:
            acc = np.mean(((Xv @ w) > 0) == yv)
            capture.metric("val_accuracy", float(acc), step=epoch)


exp = metalab.Experiment(
    name="learning_curves",
    version="1",
    operation=train,
    params=metalab.grid(lr=[0.01, 0.1, 1.0], epochs=[EPOCHS]),
    seeds=metalab.seeds(base=3, replicates=2 if SMALL else 3),
)


if __name__ == "__main__":
    result = metalab.run(exp)
    print(result.table())

    # The whole curve of each run, averaged over replicates per learning rate.
    curves = {}
    for run in result.successful:
        curves.setdefault(run.params["lr"], []).append(run.metric_series("train_loss"))
    print("\nmean training loss by epoch")
    for lr, series in sorted(curves.items()):
        mean = np.mean([s.to_numpy() for s in series], axis=0)
        marks = ", ".join(f"{mean[i]:.3f}" for i in (0, len(mean) // 2, len(mean) - 1))
        print(f"  lr={lr:<5g} epochs 0, {len(mean) // 2}, {len(mean) - 1}: {marks}")

    # The same curves as a figure: mean over replicates per step, one line per lr.
    result.plot_series("train_loss", hue="lr", band="std", path="learning_curves.png")
    print("plot: learning_curves.png")
