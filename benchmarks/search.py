"""metalab.optimize beside Optuna's own loop: overhead, parallel wall time, quality.

(a) per-trial overhead on a no-op objective: metalab (durable store, in-process
    executor, batch_size=1) against ``study.optimize`` in memory, same sampler and seed;
(b) wall time of trials that sleep 100 ms: metalab with 2 worker processes against
    Optuna sequential;
(c) best value after the budget, median over seeds, on Branin (minimum 0.397887) and
    Hartmann-6 (minimum -3.32237): metalab and Optuna with the same TPE sampler and seed.

    uv run python benchmarks/search.py            # the figures of docs/performance.md
    uv run python benchmarks/search.py --quick    # a tiny run (seconds, for checking)
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Any

import optuna
from _common import machine, print_table, tmpdir

import metalab

optuna.logging.set_verbosity(optuna.logging.WARNING)

HARTMANN_A = [
    [10, 3, 17, 3.5, 1.7, 8],
    [0.05, 10, 17, 0.1, 8, 14],
    [3, 3.5, 1.7, 10, 17, 8],
    [17, 8, 0.05, 10, 0.1, 14],
]
HARTMANN_P = [
    [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
    [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
    [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
    [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
]
HARTMANN_ALPHA = [1.0, 1.2, 3.0, 3.2]


def branin(p: dict[str, float]) -> float:
    x, y = p["x"], p["y"]
    b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
    return (y - b * x**2 + c * x - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x) + 10


def hartmann6(p: dict[str, float]) -> float:
    xs = [p[f"x{i}"] for i in range(6)]
    total = 0.0
    for a, row, pp in zip(HARTMANN_ALPHA, HARTMANN_A, HARTMANN_P, strict=True):
        total -= a * math.exp(-sum(r * (x - q) ** 2 for r, x, q in zip(row, xs, pp, strict=True)))
    return total


SPACES = {
    "branin": {"x": metalab.uniform(-5, 10), "y": metalab.uniform(0, 15)},
    "hartmann6": {f"x{i}": metalab.uniform(0, 1) for i in range(6)},
}
FUNCTIONS = {"branin": branin, "hartmann6": hartmann6}


@metalab.operation(name="bench_objective", version="1")
def objective(params, context, capture):
    """The benchmark functions, and a sleep for the wall-time comparison."""
    if context["sleep"]:
        time.sleep(context["sleep"])
    capture.metric("value", FUNCTIONS[context["fn"]](params))


def run_metalab(
    fn: str, n: int, seed: int, *, sleep: float = 0.0, executor: Any = None
) -> tuple[float, float]:
    """(seconds, best value) of a metalab search."""
    with tmpdir() as root:
        params = metalab.optimize(
            SPACES[fn],
            metric="value",
            n_trials=n,
            sampler="tpe",
            seed=seed,
            batch_size=None if executor is not None else 1,
        )
        exp = metalab.Experiment(
            name="bench", operation=objective, params=params, context={"fn": fn, "sleep": sleep}
        )
        t0 = time.perf_counter()
        result = metalab.run(exp, store=root / "s", executor=executor)
        seconds = time.perf_counter() - t0
        return seconds, result.best()["value"]


def run_optuna(fn: str, n: int, seed: int, *, sleep: float = 0.0) -> tuple[float, float]:
    """(seconds, best value) of Optuna's own loop with the same sampler and space."""
    from metalab.search.space import to_config, to_optuna

    dists = to_optuna(SPACES[fn])

    def obj(trial: optuna.Trial) -> float:
        cfg = to_config(SPACES[fn], {k: trial._suggest(k, d) for k, d in dists.items()})
        if sleep:
            time.sleep(sleep)
        return FUNCTIONS[fn](cfg)

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    t0 = time.perf_counter()
    study.optimize(obj, n_trials=n)
    return time.perf_counter() - t0, study.best_value


def overhead(n: int) -> list[Any]:
    run_metalab("branin", 3, 0)  # warm imports
    m, _ = run_metalab("branin", n, 0)
    o, _ = run_optuna("branin", n, 0)
    return [n, f"{1000 * m / n:.1f}", f"{1000 * o / n:.1f}", f"{m / o:.2f}x"]


def wall(n: int, sleep: float) -> list[Any]:
    """A LocalCluster of 2 worker processes started (and warmed) outside the timing."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        ex = metalab.DaskExecutor(client)
        run_metalab("branin", 4, 1, executor=ex)  # workers import metalab and optuna
        m, _ = run_metalab("branin", n, 0, sleep=sleep, executor=ex)
    o, _ = run_optuna("branin", n, 0, sleep=sleep)
    return [n, f"{m:.1f}", f"{o:.1f}", f"{o / m:.2f}x"]


def quality(fn: str, n: int, seeds: int) -> list[Any]:
    ms = [run_metalab(fn, n, s)[1] for s in range(seeds)]
    os_ = [run_optuna(fn, n, s)[1] for s in range(seeds)]
    return [fn, n, seeds, f"{statistics.median(ms):.4f}", f"{statistics.median(os_):.4f}"]


def main() -> None:
    """Print the three tables (``--quick``: tiny sizes, a check, not figures)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a check, not figures")
    args = ap.parse_args()
    n_over, n_wall, n_q, seeds = (10, 6, 10, 2) if args.quick else (100, 40, 60, 5)
    print(machine())
    print_table(
        "(a) per-trial overhead, no-op objective (TPE, sequential)",
        ["trials", "metalab ms/trial", "optuna ms/trial", "ratio"],
        [overhead(n_over)],
    )
    print_table(
        "(b) 100 ms trials: metalab on 2 worker processes (started) vs Optuna sequential",
        ["trials", "metalab s", "optuna s", "speed-up"],
        [wall(n_wall, 0.1)],
    )
    print_table(
        "(c) best value after the budget (TPE, median over seeds)",
        ["function", "trials", "seeds", "metalab", "optuna"],
        [quality("branin", n_q, seeds), quality("hartmann6", n_q, seeds)],
    )


if __name__ == "__main__":
    main()
