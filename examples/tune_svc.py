"""Tune an SVC on the digits data with metalab.optimize (TPE), 3 replicates per trial.

Each trial's configuration runs once per replicate (a different train/validation split
each), and the sampler is told the mean validation error: the search optimises the
expected error, not one lucky split.  Kill it at any moment and run it again: finished
trials are read back from the store and the search continues where it stopped.

    uv run python examples/tune_svc.py
"""

import os

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

import metalab

SMALL = os.environ.get("METALAB_EXAMPLE_SMALL") == "1"  # tiny sizes for the test suite


@metalab.operation(name="svc_digits", version="1")
def svc_digits(params, seeds, capture):
    x, y = load_digits(return_X_y=True)
    n = 400 if SMALL else len(y)
    xt, xv, yt, yv = train_test_split(x[:n], y[:n], test_size=0.3, random_state=int(seeds))
    model = SVC(C=params["C"], gamma=params["gamma"], kernel=params["kernel"])
    model.fit(xt, yt)
    capture.metric("val_error", 1.0 - model.score(xv, yv))


space = {
    "C": metalab.loguniform(1e-2, 1e3),
    "gamma": metalab.loguniform(1e-5, 1e-1),
    "kernel": metalab.choice(["rbf", "sigmoid"]),
}
exp = metalab.Experiment(
    name="tune_svc",
    version="1",
    operation=svc_digits,
    params=metalab.optimize(
        space, metric="val_error", direction="minimize", n_trials=8 if SMALL else 60, seed=0
    ),
    seeds=metalab.seeds(base=1, replicates=2 if SMALL else 3),
)

if __name__ == "__main__":
    # Two worker processes: two trials in flight, a new one asked as soon as one ends.
    # (In-process at the test suite's tiny size, where starting workers would dominate.)
    executor = None if SMALL else metalab.ProcessExecutor(max_workers=2)
    result = metalab.run(exp, executor=executor)
    best = result.best()
    trials = result.trials()
    print(f"{len(trials)} trials, {len(result)} runs")
    print(f"best trial {best['trial']}: val_error {best['value']:.4f} with {best['params']}")
    print(trials.drop(columns="run_ids").sort_values("val_error").head(5).to_string(index=False))
