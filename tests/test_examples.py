"""Every example in examples/ runs, at a tiny size, as a fresh process in an empty folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
#: Examples that need something this machine may not have, with the test that covers them.
ELSEWHERE: set[str] = set()


def run_example(name: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, METALAB_EXAMPLE_SMALL="1", MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc


def test_every_example_has_a_test():
    tested = {
        "pi_mc.py",
        "model_selection.py",
        "learning_curves.py",
        "random_search.py",
        "resume.py",
        "context_spec.py",
        "slurm_sweep.py",
        "validation_curve.py",
        "tune_svc.py",
    }
    present = {p.name for p in EXAMPLES.glob("*.py")}
    assert present - ELSEWHERE <= tested, f"untested examples: {present - ELSEWHERE - tested}"
    assert tested <= present


@pytest.mark.slow
def test_pi_mc_prints_the_nine_row_table(tmp_path):
    out = run_example("pi_mc.py", tmp_path).stdout.strip().splitlines()
    assert out[0].split() == [
        "run_id",
        "n_samples",
        "replicate",
        "status",
        "pi_estimate",
        "duration_s",
    ]
    assert len(out) == 10
    estimates = [float(line.split()[4]) for line in out[1:]]
    assert all(2.9 < e < 3.4 for e in estimates)
    assert [line.split()[1] for line in out[1:]] == ["1000"] * 3 + ["10000"] * 3 + ["100000"] * 3
    assert (tmp_path / "runs" / "pi_mc" / "manifest.json").exists()


@pytest.mark.slow
def test_model_selection_summarizes_and_plots(tmp_path):
    out = run_example("model_selection.py", tmp_path).stdout
    assert re.search(r"best: degree=\d+, alpha=[\d.e+-]+, validation MSE", out)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["degree", "alpha", "train_mse_mean"]
    assert len([ln for ln in lines[1:] if re.match(r"\s+\d+\s", ln)]) == 6  # 3 x 2 settings
    png = tmp_path / "model_selection.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000


@pytest.mark.slow
def test_learning_curves_records_series(tmp_path):
    out = run_example("learning_curves.py", tmp_path).stdout
    assert out.count("success") == 6
    curves = re.findall(r"lr=(\S+)\s+epochs 0, 5, 9: ([\d.]+), ([\d.]+), ([\d.]+)", out)
    assert [c[0] for c in curves] == ["0.01", "0.1", "1"]
    for _lr, *losses in curves:
        first, _mid, last = map(float, losses)
        assert abs(first - 0.693) < 0.01 and last < first  # log(2) at w=0, then it learns
    assert (tmp_path / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_random_search_ranks_configurations(tmp_path):
    out = run_example("random_search.py", tmp_path).stdout
    assert "12 runs; the 5 best of 6 configurations" in out
    means = [float(ln.split()[3]) for ln in out.splitlines()[2:]]
    assert len(means) == 5 and means == sorted(means)


@pytest.mark.slow
def test_tune_svc_finds_a_good_configuration(tmp_path):
    pytest.importorskip("optuna")
    out = run_example("tune_svc.py", tmp_path).stdout.splitlines()
    assert out[0] == "8 trials, 16 runs"
    error = float(out[1].split("val_error ")[1].split()[0])
    assert 0.0 <= error < 0.5
    assert "runs/tune_svc" not in out[0] and (tmp_path / "runs" / "tune_svc").is_dir()


@pytest.mark.slow
def test_resume_skips_completed_runs(tmp_path):
    out = run_example("resume.py", tmp_path).stdout
    assert "interrupted: sweep of 'resume_demo' interrupted" in out
    assert "after the interruption the store holds 4 of 8 runs" in out
    assert "resumed: ran 4 runs, skipped 4 already done" in out
    assert "now 8 runs" in out


@pytest.mark.slow
def test_context_spec_shares_the_dataset(tmp_path):
    out = run_example("context_spec.py", tmp_path).stdout
    fp = re.search(r"dataset fingerprint ([0-9a-f]{16})\.\.\.", out)
    assert fp
    assert "Dataset(n_samples=300, n_features=20, noise=0.5, seed=0)" in out
    rows = [ln.split() for ln in out.splitlines() if re.match(r"\s+[\d.]+\s+[\d.]+", ln)]
    assert [r[0] for r in rows] == ["0.01", "1", "100"]
    # Same spec, same fingerprint in a second process (it enters every run id).
    again = run_example("context_spec.py", tmp_path).stdout
    assert fp.group(0) in again


def _load_example(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"example_{name[:-3]}", EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses (context_spec) look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_validation_curve_matches_scikit_learn(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import StratifiedKFold, validation_curve
    from sklearn.svm import SVC

    import metalab

    out = run_example("validation_curve.py", tmp_path).stdout
    rows = [ln.split() for ln in out.splitlines() if re.match(r"\s*[\d.e+-]+\s+[\d.]+\s", ln)]
    assert [float(r[0]) for r in rows] == pytest.approx(np.logspace(-6, -1, 5).tolist(), rel=1e-3)
    assert re.search(r"best: gamma=0\.000316, cv_score 0\.9\d+", out)
    assert (tmp_path / "validation_curve.png").read_bytes()[:4] == b"\x89PNG"

    # The same study with scikit-learn's own validation_curve, replicate by replicate.
    result = metalab.load_results(tmp_path / "runs" / "validation_curve")
    assert len(result) == 10 and result.counts()["success"] == 10
    X, y = load_digits(return_X_y=True)
    X, y = X[:500], y[:500]
    gammas = np.logspace(-6, -1, 5)
    for r in (0, 1):
        cv = StratifiedKFold(
            n_splits=5, shuffle=True, random_state=int(metalab.SeedBundle(0, (r,)))
        )
        train, test = validation_curve(
            SVC(), X, y, param_name="gamma", param_range=gammas, cv=cv, n_jobs=1
        )
        for run in result.filter(replicate=r):
            i = int(np.argmin(abs(gammas - run.params["gamma"])))
            assert round(run.metrics["train_score"], 4) == round(train[i].mean(), 4)
            assert round(run.metrics["cv_score"], 4) == round(test[i].mean(), 4)
            folds = run.metric_series("fold_cv_score").to_numpy()
            assert np.round(folds, 4).tolist() == np.round(test[i], 4).tolist()

    # The figure: both metrics on one axes, each with its replicate band, and a legend.
    ax = _load_example("validation_curve.py").plot(result)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "training score",
        "cross-validation",
    ]
    assert len(ax.lines) == 2 and len(ax.collections) == 2 and ax.get_xscale() == "log"


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_sweep_runs_on_the_local_slurm(tmp_path):
    proc = run_example("slurm_sweep.py", tmp_path)
    assert "#SBATCH" in proc.stdout  # the job script dask-jobqueue generates is shown
    res = __import__("metalab").load_results(tmp_path / "runs" / "slurm_sweep")
    assert len(res) == 20 and res.counts()["success"] == 20
