"""The trivial sweep through metalab and its peers (MLflow, Sacred, signac, Ray Tune), in one
process.

    uv run --with mlflow --with sacred --with signac python benchmarks/peers.py
    uv run --with mlflow --with sacred --with signac python benchmarks/peers.py --runs 1000
    uv run --with 'ray[tune]' python benchmarks/peers.py --only 'Ray Tune' --runs 100

Sacred 0.8.x imports ``pkg_resources``, gone from setuptools >= 81; to measure it add
``--with 'setuptools<81'`` (without it the Sacred rows say "not measured" and why).

Every tool runs the same trivial sweep (``y = x*x + seed``, three scalar metrics, one record
per run) into a local store in a temp folder, then the records are read back into pandas:

- metalab: ``metalab.run`` with a durable store; ``load_results(store).table(as_dataframe=True)``;
- MLflow: one run per point with ``log_params`` + ``log_metrics``, on SQLite and on the file
  store; ``mlflow.search_runs``;
- Sacred: ``Experiment.run`` with a ``FileStorageObserver`` (default settings); its run
  folders' ``config.json`` and ``metrics.json`` into a DataFrame;
- signac: one job per state point, the metrics in the job document; ``project.to_dataframe()``;
- Ray Tune: a function trainable returning the three metrics, ``tune.grid_search`` over x,
  ``Tuner.fit()`` with default settings (local Ray started by ``ray.init()``, timed as
  setup), results in a folder of the temp dir; ``ResultGrid.get_dataframe()``.

Imports and one-off setup (MLflow creating its SQLite schema, ``signac.init_project``) are
timed apart and excluded from the rates.  Each peer sweep stops after ``--budget`` seconds;
its rate is then over the runs it made.  metalab sweeps are the median of 3 repetitions
(reads of 5), peer figures one pass (they are slow).  A peer that fails to import or run
gets a note and the other rows still print.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, experiment, machine, print_table, raw_loop, tmpdir

import metalab

SEED = 1  # metalab.seeds(base=1) in _common.experiment: seeds.base == 1 for every run


@dataclass
class Result:
    """One tool's sweep and read-back, measured once."""

    tool: str
    store: str
    runs: int
    sweep_s: float
    read_s: float
    import_s: str = ""  # seconds, or '(loaded)' if an earlier row imported it
    setup_s: float = 0.0


def _expected_y(n: int) -> float:
    return float(sum(x * x + SEED for x in range(n)))


def _check(tool: str, n: int, ys: Any) -> None:
    """The records read back are the ones written: n of them, the right y values."""
    ys = [float(v) for v in ys]
    if len(ys) != n or sum(ys) != _expected_y(n):
        raise RuntimeError(
            f"{tool}: read back {len(ys)} records (sum y {sum(ys)}), "
            f"expected {n} (sum y {_expected_y(n)})"
        )


def _budgeted(n: int, budget: float, one: Callable[[int], None]) -> tuple[int, float]:
    """Call ``one(x)`` for x in range(n), stopping once ``budget`` seconds have passed."""
    t0 = time.perf_counter()
    done = 0
    for x in range(n):
        one(x)
        done += 1
        if time.perf_counter() - t0 > budget:
            break
    return done, time.perf_counter() - t0


# ----------------------------------------------------------------------------- metalab


@functools.cache
def metalab_at(n: int) -> tuple[float, float]:
    """(sweep s, read s) for n trivial runs: median of 3 fresh stores, of 5 reads."""
    exp = experiment(n)
    with tmpdir() as d:
        i = [0]

        def sweep() -> None:
            i[0] += 1
            metalab.run(exp, store=d / f"s{i[0]}")

        sweep_s = best_of(sweep, 3)
        store = d / "s1"

        def read() -> None:
            df = metalab.load_results(store).table(as_dataframe=True)
            _check("metalab", n, df["y"])

        read_s = best_of(read, 5)
    return sweep_s, read_s


def warm_up() -> None:
    """Pay metalab's first-use imports (Dask, pyarrow) outside the timings."""
    with tmpdir() as d:
        metalab.run(experiment(10), store=d / "w")
        metalab.load_results(d / "w").table(as_dataframe=True)


# ----------------------------------------------------------------------------- peers


def run_signac(n: int, budget: float, root: Path) -> Result:
    root.mkdir(parents=True, exist_ok=True)
    loaded = "signac" in sys.modules
    t0 = time.perf_counter()
    import signac

    import_s = "(loaded)" if loaded else f"{time.perf_counter() - t0:.2f}"
    t0 = time.perf_counter()
    project = signac.init_project(str(root / "signac"))
    setup_s = time.perf_counter() - t0

    def one(x: int) -> None:
        job = project.open_job({"x": x, "seed": SEED}).init()
        job.document.update({"y": x * x + SEED, "x2": x * 2, "one": 1.0})

    done, sweep_s = _budgeted(n, budget, one)
    t0 = time.perf_counter()
    df = signac.get_project(str(root / "signac")).to_dataframe()
    read_s = time.perf_counter() - t0
    _check("signac", done, df["doc.y"])
    return Result("signac", "one job per state point", done, sweep_s, read_s, import_s, setup_s)


def read_sacred(folder: Path) -> Any:
    """Sacred's FileStorageObserver run folders (config.json, metrics.json) into pandas."""
    import pandas as pd

    rows = []
    for run in folder.iterdir():
        if not run.name.isdigit():
            continue  # _sources, _resources
        row = {"run": int(run.name), **json.loads((run / "config.json").read_text())}
        for name, series in json.loads((run / "metrics.json").read_text()).items():
            row[name] = series["values"][-1]
        rows.append(row)
    return pd.DataFrame(rows)


def run_sacred(n: int, budget: float, root: Path) -> Result:
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    loaded = "sacred" in sys.modules
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "pkg_resources is deprecated"
        from sacred import Experiment
        from sacred.observers import FileStorageObserver

    import_s = "(loaded)" if loaded else f"{time.perf_counter() - t0:.2f}"
    t0 = time.perf_counter()
    folder = root / "sacred"
    ex = Experiment("bench")
    ex.observers.append(FileStorageObserver(str(folder)))
    quiet = logging.getLogger("peers.sacred")
    quiet.setLevel(logging.CRITICAL)
    ex.logger = quiet

    @ex.config
    def cfg():
        x = 0  # noqa: F841 - Sacred reads the config scope's local variables

    @ex.main
    def trivial(_run, x, seed):
        _run.log_scalar("y", x * x + seed)
        _run.log_scalar("x2", x * 2)
        _run.log_scalar("one", 1.0)

    setup_s = time.perf_counter() - t0

    def one(x: int) -> None:
        ex.run(config_updates={"x": x, "seed": SEED})

    done, sweep_s = _budgeted(n, budget, one)
    t0 = time.perf_counter()
    df = read_sacred(folder)
    read_s = time.perf_counter() - t0
    _check("Sacred", done, df["y"])
    return Result("Sacred", "FileStorageObserver", done, sweep_s, read_s, import_s, setup_s)


def run_mlflow(n: int, budget: float, root: Path, backend: str) -> Result:
    root.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3.x refuses ./mlruns without it
    loaded = "mlflow" in sys.modules
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow

    import_s = "(loaded)" if loaded else f"{time.perf_counter() - t0:.2f}"
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if backend == "sqlite":
        uri, label = f"sqlite:///{root / 'mlflow.db'}", "SQLite"
    else:
        uri, label = (root / "mlruns").as_uri(), "file store"
    t0 = time.perf_counter()
    mlflow.set_tracking_uri(uri)
    exp_id = mlflow.create_experiment("bench")
    setup_s = time.perf_counter() - t0

    def one(x: int) -> None:
        with mlflow.start_run(experiment_id=exp_id):
            mlflow.log_params({"x": x, "seed": SEED})
            mlflow.log_metrics({"y": x * x + SEED, "x2": x * 2, "one": 1.0})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        done, sweep_s = _budgeted(n, budget, one)
        t0 = time.perf_counter()
        df = mlflow.search_runs(experiment_ids=[exp_id], max_results=max(done, 1))
        read_s = time.perf_counter() - t0
    _check("MLflow", done, df["metrics.y"])
    return Result("MLflow", label, done, sweep_s, read_s, import_s, setup_s)


def _ray_trivial(config: dict[str, Any]) -> None:
    from ray import tune

    x, seed = config["x"], config["seed"]
    tune.report({"y": x * x + seed, "x2": x * 2, "one": 1.0})


def run_ray_tune(n: int, budget: float, root: Path) -> Result:
    root.mkdir(parents=True, exist_ok=True)
    loaded = "ray" in sys.modules
    t0 = time.perf_counter()
    import ray
    from ray import tune

    import_s = "(loaded)" if loaded else f"{time.perf_counter() - t0:.2f}"
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    setup_s = time.perf_counter() - t0
    try:
        tuner = tune.Tuner(
            _ray_trivial,
            param_space={"x": tune.grid_search(list(range(n))), "seed": SEED},
            tune_config=tune.TuneConfig(time_budget_s=budget),
            run_config=tune.RunConfig(storage_path=str(root / "ray"), name="bench", verbose=0),
        )
        t0 = time.perf_counter()
        grid = tuner.fit()
        sweep_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        df = grid.get_dataframe()
        read_s = time.perf_counter() - t0
    finally:
        ray.shutdown()
    if "y" not in df.columns:
        raise RuntimeError(f"Ray Tune: no trial reported within {budget:g} s (raise --budget)")
    df = df.dropna(subset=["y"])
    xs = df["config/x"].astype(int)
    if not (df["y"].astype(float) == xs * xs + SEED).all():
        raise RuntimeError("Ray Tune: the records read back are not the ones written")
    return Result("Ray Tune", "Tuner, local Ray", len(df), sweep_s, read_s, import_s, setup_s)


HINTS = {
    "pkg_resources": "Sacred 0.8.x imports pkg_resources, which setuptools >= 81 no longer ships;"
    " add `--with 'setuptools<81'` to the uv command",
}


def attempt(name: str, fn: Callable[[], Result], notes: list[str]) -> Result | None:
    """Run one peer; on any failure keep a note instead of a row."""
    print(f"... {name}", file=sys.stderr, flush=True)
    try:
        return fn()
    except Exception as e:  # a peer's failure must not stop the others
        last = traceback.format_exception_only(type(e), e)[-1].strip().splitlines()[0]
        hint = next((h for key, h in HINTS.items() if key in str(e)), "")
        notes.append(f"**{name} not measured**: {last[:300]}" + (f" - {hint}" if hint else ""))
        return None


# ----------------------------------------------------------------------------- main


def _s(seconds: float) -> str:
    return f"{seconds:.3g}"


def _r(rate: float) -> str:
    return f"{rate:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300, help="runs for MLflow and Sacred (300)")
    ap.add_argument("--signac-runs", type=int, default=3_000, help="runs for signac (3,000)")
    ap.add_argument("--large", type=int, default=100_000, help="metalab's larger sweep (100,000)")
    ap.add_argument("--only", help="measure only this peer (e.g. 'Ray Tune', 'signac')")
    ap.add_argument(
        "--budget",
        type=float,
        default=50.0,
        help="stop a peer's sweep after this many seconds (50)",
    )
    args = ap.parse_args()
    print(f"# metalab vs MLflow, Sacred, signac, Ray Tune\n\nmachine: {machine()}")
    versions = {"metalab": getattr(metalab, "__version__", "?")}
    for pkg in ("mlflow", "sacred", "signac", "ray"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "not installed"
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))

    warm_up()
    for n in sorted({args.runs, args.signac_runs, args.large}):
        print(f"... metalab {n:,} runs", file=sys.stderr, flush=True)
        metalab_at(n)
    with tmpdir() as d:
        raw_s = best_of(lambda: raw_loop(args.large, d / "raw.parquet"), 3)

    notes: list[str] = []
    peers: list[Result] = []
    failed: list[str] = []
    with tmpdir() as d:
        for name, fn in (
            ("signac", lambda: run_signac(args.signac_runs, args.budget, d / "a")),
            ("Sacred", lambda: run_sacred(args.runs, args.budget, d / "b")),
            ("MLflow (SQLite)", lambda: run_mlflow(args.runs, args.budget, d / "c", "sqlite")),
            ("MLflow (file store)", lambda: run_mlflow(args.runs, args.budget, d / "d", "file")),
            ("Ray Tune", lambda: run_ray_tune(args.runs, args.budget, d / "e")),
        ):
            if args.only and not name.startswith(args.only):
                continue
            r = attempt(name, fn, notes)
            if r is None:
                failed.append(name)
            else:
                peers.append(r)
                if r.runs < (args.signac_runs if r.tool == "signac" else args.runs):
                    notes.append(
                        f"{r.tool} ({r.store}) stopped at the {args.budget:g} s budget "
                        f"after {r.runs:,} runs; metalab compared at the same count"
                    )

    rows: list[list[Any]] = []
    for n in sorted({args.runs, args.signac_runs, args.large}):
        s, _ = metalab_at(n)
        rows.append(
            [
                "metalab",
                "durable store (journal + Parquet)",
                f"{n:,}",
                _s(s),
                _r(n / s),
                _r(n / s),
                "1",
                "",
                "",
            ]
        )
    m_large = args.large / metalab_at(args.large)[0]
    rows.append(
        [
            "raw loop (the limit)",
            "list of dicts, one Parquet file",
            f"{args.large:,}",
            _s(raw_s),
            _r(args.large / raw_s),
            _r(m_large),
            f"{m_large / (args.large / raw_s):.2f}",
            "",
            "",
        ]
    )
    for r in peers:
        n = r.runs
        m_rate = n / metalab_at(n)[0]
        rate = n / r.sweep_s
        rows.append(
            [
                r.tool,
                r.store,
                f"{n:,}",
                _s(r.sweep_s),
                _r(rate),
                _r(m_rate),
                f"{m_rate / rate:,.0f}x",
                r.import_s,
                _s(r.setup_s),
            ]
        )
    rows += [[name, "not measured (see notes)", "", "", "", "", "", "", ""] for name in failed]
    print_table(
        "Sweep: the trivial run (y = x*x + seed, three metrics, one record per run)",
        [
            "tool",
            "store",
            "runs",
            "sweep s",
            "runs/s",
            "metalab runs/s (same runs)",
            "metalab / tool (rate)",
            "import s (excluded)",
            "setup s (excluded)",
        ],
        rows,
    )

    rrows: list[list[Any]] = []
    for n in sorted({args.runs, args.signac_runs, args.large}):
        _, rs = metalab_at(n)
        rrows.append(
            [
                "metalab",
                "load_results(store).table(as_dataframe=True)",
                f"{n:,}",
                _s(rs),
                _r(n / rs),
                _s(rs),
                "1",
            ]
        )
    readers = {
        "signac": "project.to_dataframe()",
        "Sacred": "run folders' JSON -> DataFrame",
        "MLflow": "mlflow.search_runs",
        "Ray Tune": "ResultGrid.get_dataframe()",
    }
    for r in peers:
        _, m_read = metalab_at(r.runs)
        rrows.append(
            [
                f"{r.tool} ({r.store})",
                readers[r.tool],
                f"{r.runs:,}",
                _s(r.read_s),
                _r(r.runs / r.read_s),
                _s(m_read),
                f"{r.read_s / m_read:,.1f}x",
            ]
        )
    rrows += [[name, "not measured (see notes)", "", "", "", "", ""] for name in failed]
    print_table(
        "Read-back: all records into a pandas DataFrame",
        [
            "tool",
            "how",
            "records",
            "read s",
            "records/s",
            "metalab read s (same records)",
            "tool / metalab (time)",
        ],
        rrows,
    )

    notes += [
        "metalab: sweeps median of 3, each into a fresh store, reads median of 5; "
        "peers: one pass each.",
        "Every read-back is checked: the record count and the sum of y match what was written.",
        "Sacred runs with its defaults (stdout capture, host info, source and dependency "
        "gathering per run); MLflow with `log_params` + `log_metrics` inside `start_run`.",
    ]
    print("\n## Notes\n")
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
