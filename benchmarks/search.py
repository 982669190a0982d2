"""metalab.optimize beside Optuna's own loop: overhead, parallel wall time, quality.

(a) per-trial overhead on a no-op objective: metalab (durable store, in-process
    executor, batch_size=1) against ``study.optimize`` in memory, same sampler and seed;
    the marginal cost per trial (from two budgets) is shown beside the total;
(b) wall time of trials that sleep 100 ms: metalab with 2 worker processes (a cluster
    started outside the timing) against Optuna sequential, and the median idle gap of a
    worker between two trials;
    (a) and (b) time metalab and Optuna back to back in pairs (the order alternated)
    and give the median of the pairs' ratios: on a shared machine the load changes
    from second to second, and a pair sees nearly the same load on both sides;
(c) best value after the budget, median over seeds, on Branin (minimum 0.397887),
    Hartmann-6 (minimum -3.32237) and an SVC on the digits data (validation error):
    metalab and Optuna with the same TPE sampler and seed;
(d) a noisy objective (Branin + Gaussian noise of the configuration and the seed):
    the true (noise-free) value of the configuration each loop reports as best; Optuna
    told one noisy value per trial, metalab told the mean over replicates.

    uv run python benchmarks/search.py            # the figures of docs/performance.md
    uv run python benchmarks/search.py --quick    # a tiny run (seconds, for checking)
    uv run python benchmarks/search.py --only ab  # tables (a) and (b) only
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shutil
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


_DIGITS: list[Any] = []


def svc_digits(p: dict[str, float]) -> float:
    """Validation error of an SVC on a fixed split of the digits data (``QUICK``: 400 rows)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.svm import SVC

    if not _DIGITS:
        x, y = load_digits(return_X_y=True)
        n = 400 if QUICK else len(y)
        _DIGITS.extend(train_test_split(x[:n], y[:n], test_size=0.3, random_state=0))
    xt, xv, yt, yv = _DIGITS
    return 1.0 - float(SVC(C=p["C"], gamma=p["gamma"]).fit(xt, yt).score(xv, yv))


SPACES = {
    "branin": {"x": metalab.uniform(-5, 10), "y": metalab.uniform(0, 15)},
    "hartmann6": {f"x{i}": metalab.uniform(0, 1) for i in range(6)},
    "svc": {"C": metalab.loguniform(1e-2, 1e3), "gamma": metalab.loguniform(1e-5, 1e-1)},
}
FUNCTIONS = {"branin": branin, "hartmann6": hartmann6, "svc": svc_digits}
QUICK = False


@metalab.operation(name="bench_objective", version="1")
def objective(params, context, capture):
    """The benchmark functions, and a sleep for the wall-time comparison."""
    if context["sleep"]:
        time.sleep(context["sleep"])
    capture.metric("value", FUNCTIONS[context["fn"]](params))


def noise_of(params: dict[str, Any], seed: int) -> float:
    """A standard normal draw fixed by the configuration and the seed (a real evaluation's
    noise depends on both: a constant per seed would be a mere offset)."""
    import zlib

    import numpy as np

    key = zlib.crc32(json.dumps(params, sort_keys=True).encode())
    return float(np.random.default_rng([seed, key]).standard_normal())


@metalab.operation(name="bench_noisy", version="1")
def noisy_objective(params, seeds, context, capture):
    """A benchmark function plus Gaussian noise of the configuration and the run's seed."""
    noise = context["noise"] * noise_of(params, int(seeds))
    capture.metric("value", FUNCTIONS[context["fn"]](params) + noise)


def run_metalab(
    fn: str,
    n: int,
    seed: int,
    *,
    sleep: float = 0.0,
    executor: Any = None,
    reps: int = 1,
    noise: float = 0.0,
) -> tuple[float, dict[str, Any], list[Any]]:
    """(seconds, best trial, records) of a metalab search (``noise``: a noisy objective)."""
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
            name="bench",
            operation=noisy_objective if noise else objective,
            params=params,
            context={"fn": fn, "sleep": sleep, "noise": noise},
            seeds=metalab.seeds(base=seed, replicates=reps),
        )
        t0 = time.perf_counter()
        result = metalab.run(exp, store=root / "s", executor=executor)
        seconds = time.perf_counter() - t0
        frame = result.to_pandas(full=True) if executor is not None else None
        rows = [] if frame is None else frame[["worker", "started_at", "ended_at"]].values
        return seconds, result.best(), list(rows)


def run_optuna(
    fn: str, n: int, seed: int, *, sleep: float = 0.0, noise: float = 0.0
) -> tuple[float, optuna.Study]:
    """(seconds, study) of Optuna's own loop with the same sampler and space."""
    from metalab.search.space import to_config, to_optuna

    dists = to_optuna(SPACES[fn])
    seed_int = metalab.seeds(base=seed).seed_int(0)  # the seed of metalab's replicate 0

    def obj(trial: optuna.Trial) -> float:
        cfg = to_config(SPACES[fn], {k: trial._suggest(k, d) for k, d in dists.items()})
        if sleep:
            time.sleep(sleep)
        return FUNCTIONS[fn](cfg) + (noise * noise_of(cfg, seed_int) if noise else 0.0)

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    t0 = time.perf_counter()
    study.optimize(obj, n_trials=n)
    return time.perf_counter() - t0, study


def _pair(m: Any, o: Any, first_m: bool) -> tuple[Any, Any]:
    """One metalab and one Optuna measurement back to back (order alternated: a load
    change on a shared machine then hits both sides of the ratio alike)."""
    if first_m:
        a = m()
        return a, o()
    b = o()
    return m(), b


def overhead(n: int, repeat: int) -> list[Any]:
    """``repeat`` back-to-back pairs at ``n`` and ``n // 4`` trials: median seconds of
    each side, and the median of the pairs' ratios."""
    run_metalab("branin", 3, 0)  # warm imports
    small = max(1, n // 4)
    times: dict[tuple[str, int], list[float]] = {}
    ratios = []
    for i in range(repeat):
        for k in (small, n):
            m, o = _pair(
                lambda k=k: run_metalab("branin", k, 0)[0],
                lambda k=k: run_optuna("branin", k, 0)[0],
                i % 2 == 0,
            )
            times.setdefault(("m", k), []).append(m)
            times.setdefault(("o", k), []).append(o)
            if k == n:
                ratios.append(m / o)
    med = {key: statistics.median(v) for key, v in times.items()}
    m, o = med["m", n], med["o", n]
    dm = (med["m", n] - med["m", small]) / (n - small)  # marginal: fixed costs cancel
    do = (med["o", n] - med["o", small]) / (n - small)
    return [
        n,
        f"{1000 * m / n:.2f}",
        f"{1000 * o / n:.2f}",
        f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
        f"{1000 * dm:.2f} / {1000 * do:.2f} = {dm / do:.2f}x",
    ]


def _gaps(rows: list[Any]) -> list[float]:
    """Seconds each worker sat idle between two consecutive runs."""
    by_worker: dict[str, list[tuple[Any, Any]]] = {}
    for worker, t0, t1 in rows:
        by_worker.setdefault(worker, []).append((t0, t1))
    out = []
    for runs in by_worker.values():
        runs.sort()
        out += [(b[0] - a[1]).total_seconds() for a, b in itertools.pairwise(runs)]
    return out


def wall(n: int, sleep: float, repeat: int) -> list[Any]:
    """``repeat`` back-to-back pairs: metalab on a local cluster of 2 worker processes
    (started and warmed outside the timing), Optuna sequential; medians of each side
    and of the pairs' speed-ups."""
    from distributed import Client

    from metalab.executors.process_cluster import start_cluster

    ms, os_, ups, gaps = [], [], [], []
    cluster, log = start_cluster(2, {"dashboard_address": ":0"})
    with cluster, Client(cluster) as client:
        ex = metalab.DaskExecutor(client)
        run_metalab("branin", 4, 1, executor=ex)  # workers import metalab and optuna
        for i in range(repeat):
            (m, _, rows), (o, _) = _pair(
                lambda: run_metalab("branin", n, 0, sleep=sleep, executor=ex),
                lambda: run_optuna("branin", n, 0, sleep=sleep),
                i % 2 == 0,
            )
            ms.append(m)
            os_.append(o)
            ups.append(o / m)
            gaps += _gaps(rows)
    shutil.rmtree(log.parent, ignore_errors=True)
    gap = statistics.median(gaps) if gaps else math.nan
    return [
        n,
        f"{statistics.median(ms):.2f}",
        f"{statistics.median(os_):.2f}",
        f"{statistics.median(ups):.2f}x ({min(ups):.2f}-{max(ups):.2f})",
        f"{1000 * gap:.0f} ms",
    ]


def quality(fn: str, n: int, seeds: int) -> list[Any]:
    ms = [run_metalab(fn, n, s)[1]["value"] for s in range(seeds)]
    os_ = [run_optuna(fn, n, s)[1].best_value for s in range(seeds)]
    return [fn, n, seeds, f"{statistics.median(ms):.4f}", f"{statistics.median(os_):.4f}"]


def noisy(n: int, reps: int, seeds: int, noise: float) -> list[Any]:
    """True Branin value of the best reported: Optuna, metalab with 1 and ``reps`` replicates.

    Optuna and metalab with one replicate see the same noisy values (the same runs); with
    ``reps`` replicates metalab is told the mean, over ``n // reps`` trials (the same
    number of evaluations) and over ``n`` trials (the same number of trials).
    """

    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.3f}"

    opt = [branin(run_optuna("branin", n, s, noise=noise)[1].best_params) for s in range(seeds)]
    cols = [med(opt)]
    for trials, r in ((n, 1), (n // reps, reps), (n, reps)):
        found = [run_metalab("branin", trials, s, reps=r, noise=noise)[1] for s in range(seeds)]
        cols.append(med([branin(b["params"]) for b in found]))
    return [n, noise, seeds, *cols]


def main() -> None:
    """Print the four tables (``--quick``: tiny sizes, a check, not figures)."""
    global QUICK
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a check, not figures")
    ap.add_argument("--only", default="abcd", help="the tables to print, e.g. 'ab'")
    args = ap.parse_args()
    QUICK = args.quick
    n_over, rep, n_wall, rep_wall, n_q, n_svc, seeds = (
        (8, 1, 6, 1, 8, 4, 2) if QUICK else (100, 5, 40, 3, 60, 40, 5)
    )
    print(machine())
    if "a" in args.only:
        print_table(
            "(a) per-trial overhead, no-op objective (TPE, sequential; median of alternating runs)",
            [
                "trials",
                "metalab ms/trial",
                "optuna ms/trial",
                "ratio",
                "marginal ms: metalab / optuna",
            ],
            [overhead(n_over, rep)],
        )
    if "b" in args.only:
        print_table(
            "(b) 100 ms trials: metalab on 2 worker processes (started) vs Optuna sequential",
            [
                "trials",
                "metalab s",
                "optuna s",
                "speed-up: median of pairs (range)",
                "worker idle between trials",
            ],
            [wall(n_wall, 0.1, rep_wall)],
        )
    if "c" in args.only:
        print_table(
            "(c) best value after the budget (TPE, median over seeds)",
            ["function", "trials", "seeds", "metalab", "optuna"],
            [
                quality("branin", n_q, seeds),
                quality("hartmann6", n_q, seeds),
                quality("svc", n_svc, seeds),
            ],
        )
    if "d" in args.only:
        print_table(
            "(d) noisy Branin: true value of the configuration reported best (optimum 0.398)",
            [
                "trials",
                "noise sd",
                "seeds",
                "optuna",
                "metalab, 1 replicate",
                "metalab, mean of 3, a third of the trials",
                "metalab, mean of 3",
            ],
            [noisy(n_q, 3, seeds, 10.0)],
        )


if __name__ == "__main__":
    main()
