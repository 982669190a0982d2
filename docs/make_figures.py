"""Make the pictures of docs/results.md and docs/recipes.md from real runs.

Run it before building the docs::

    uv run python docs/make_figures.py            # writes docs/img/*.png

The sweeps run in a temporary folder, so nothing is left behind but the pictures.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

import metalab

IMG = Path(__file__).resolve().parent / "img"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@metalab.operation(name="pi_mc", version="0.1")
def estimate_pi(params, seeds, capture):
    n = params["n_samples"]
    rng = seeds.numpy()
    x, y = rng.random(n), rng.random(n)
    pi_est = 4.0 * (x**2 + y**2 <= 1).mean()
    capture.metric("pi_estimate", pi_est)
    capture.metric("abs_error", abs(pi_est - math.pi))


def pi_experiment() -> metalab.Experiment:
    return metalab.Experiment(
        name="pi_mc",
        version="0.1",
        context={},
        operation=estimate_pi,
        params=metalab.grid(n_samples=[100, 1_000, 10_000, 100_000, 1_000_000]),
        seeds=metalab.seeds(base=42, replicates=10),
    )


@metalab.operation(name="sgd", version="1")
def train(params, seeds, capture):
    """Linear regression by mini-batch SGD; records the training loss at every epoch."""
    rng = seeds.numpy()
    n, d = 512, 10
    X = rng.normal(size=(n, d))
    w_true = rng.normal(size=d)
    y = X @ w_true + rng.normal(scale=0.5, size=n)
    w = np.zeros(d)
    lr, batch = params["lr"], params["batch_size"]
    for epoch in range(30):
        order = rng.permutation(n)
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            grad = X[idx].T @ (X[idx] @ w - y[idx]) / len(idx)
            w -= lr * grad
        capture.metric("loss", float(np.mean((X @ w - y) ** 2)), step=epoch)
    capture.metric("final_loss", float(np.mean((X @ w - y) ** 2)))


def sgd_experiment() -> metalab.Experiment:
    return metalab.Experiment(
        name="sgd",
        version="1",
        context={},
        operation=train,
        params=metalab.grid(lr=[0.001, 0.003, 0.01, 0.03], batch_size=[16, 64]),
        seeds=metalab.seeds(base=0, replicates=5),
    )


def validation_curve(out: Path) -> Path:
    """The study of examples/validation_curve.py at full size (needs scikit-learn)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "metalab_example_validation_curve", EXAMPLES / "validation_curve.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example  # dataclasses (context_spec) look their module up
    spec.loader.exec_module(example)
    result = metalab.run(example.experiment())
    example.plot(result, out / "validation_curve.png")
    return out / "validation_curve.png"


def main(out: Path = IMG) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    made = []
    old = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            pi = metalab.run(pi_experiment())
            pi.plot(x="n_samples", y="pi_estimate", logx=True, path=out / "pi_estimate.png")
            made.append(out / "pi_estimate.png")
            ax = pi.plot(
                x="n_samples", y="abs_error", logx=True, logy=True, band="std", errorbars=True
            )
            ns = np.array([100, 1_000_000])
            ax.plot(ns, 1.64 / np.sqrt(ns), "--", color="gray", label="1.64/√n")
            ax.legend(frameon=False)
            ax.figure.savefig(out / "pi_error.png", dpi=150, bbox_inches="tight")
            made.append(out / "pi_error.png")

            sgd = metalab.run(sgd_experiment())
            sgd.filter(batch_size=16).plot_series(
                "loss", hue="lr", logy=True, path=out / "learning_curves.png"
            )
            made.append(out / "learning_curves.png")
            sgd.plot(
                x="lr",
                y="final_loss",
                hue="batch_size",
                logx=True,
                logy=True,
                path=out / "final_loss.png",
            )
            made.append(out / "final_loss.png")
            made.append(validation_curve(out))
        finally:
            os.chdir(old)
            plt.close("all")
    return made


if __name__ == "__main__":
    for p in main(Path(sys.argv[1]) if len(sys.argv) > 1 else IMG):
        print(p)
