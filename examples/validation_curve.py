"""The scikit-learn validation curve: an SVC on the digits data, train and CV score against gamma.

The study of scikit-learn's ``plot_validation_curve`` example, with replicates: each
replicate shuffles the 5 folds with its own seed (``int(seeds)``), so the band shows
how much the curve depends on the split. The data is a ``@metalab.context_spec``
(loaded once per process, fingerprinted into every run id); each fold's scores are
stepped metrics, and their means the scalars ``train_score`` and ``cv_score``.
Needs scikit-learn (``pip install "metalab[sklearn]"``); the digits data ships with it.

    uv run python examples/validation_curve.py            # 1797 digits, 3 replicates
    uv run python examples/validation_curve.py --small    # 500 digits, 2 replicates
"""

from __future__ import annotations

import argparse
import functools
import os

import numpy as np

import metalab

GAMMAS = np.logspace(-6, -1, 5)


@metalab.context_spec
class Digits:
    """scikit-learn's 8x8 digits, the first ``n_samples`` of them (1797 in all)."""

    n_samples: int = 1797

    def load(self):
        return _load(self)


@functools.lru_cache(maxsize=2)
def _load(spec):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[: spec.n_samples], y[: spec.n_samples]


def folds(seeds, n_splits=5):
    """The replicate's 5 folds: stratified, shuffled with the run's seed."""
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=int(seeds))


@metalab.operation(name="svc_validation_curve", version="1")
def svc_scores(context, params, seeds, capture):
    from sklearn.svm import SVC

    X, y = context.load()
    train, cv = [], []
    for fold, (tr, te) in enumerate(folds(seeds).split(X, y)):
        model = SVC(gamma=params["gamma"]).fit(X[tr], y[tr])
        train.append(model.score(X[tr], y[tr]))
        cv.append(model.score(X[te], y[te]))
        capture.metric("fold_train_score", train[-1], step=fold)
        capture.metric("fold_cv_score", cv[-1], step=fold)
    capture.metric("train_score", float(np.mean(train)))
    capture.metric("cv_score", float(np.mean(cv)))


def experiment(small: bool = False) -> metalab.Experiment:
    """The study; ``small`` is a quick version for tests (500 digits, 2 replicates)."""
    return metalab.Experiment(
        name="validation_curve",
        version="1",
        context=Digits(n_samples=500 if small else 1797),
        operation=svc_scores,
        params=metalab.grid(gamma=GAMMAS.tolist()),
        seeds=metalab.seeds(base=0, replicates=2 if small else 3),
    )


def plot(result: metalab.Results, path=None):
    """Train and CV score against gamma, mean over replicates with a ±1 std band."""
    ax = result.plot(
        x="gamma",
        y=["train_score", "cv_score"],
        label=["training score", "cross-validation"],
        logx=True,
        band="std",
    )
    n = result.summary(group_by="gamma", metrics=["cv_score"])["cv_score_count"].max()
    ax.set_ylabel(f"accuracy (mean ± 1 std over {n} replicates)")
    ax.set_title("SVC on the digits data, 5-fold cross-validation")
    ax.legend(frameon=False, loc="center")
    if path is not None:
        ax.figure.savefig(os.fspath(path), dpi=150, bbox_inches="tight")
    return ax


def main(argv=None) -> metalab.Results:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="500 digits, 2 replicates")
    parser.add_argument("--plot", default="validation_curve.png", help="figure file")
    args = parser.parse_args(argv)
    small = args.small or os.environ.get("METALAB_EXAMPLE_SMALL") == "1"

    result = metalab.run(experiment(small))
    summary = result.summary(group_by="gamma", metrics=["train_score", "cv_score"])
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    best = summary.loc[summary["cv_score_mean"].idxmax()]
    print(f"best: gamma={best['gamma']:.3g}, cv_score {best['cv_score_mean']:.4f}")
    plot(result, args.plot)
    print(f"plot: {args.plot}")
    return result


if __name__ == "__main__":
    main()
