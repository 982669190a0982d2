"""Every snippet of ../shared/SEED.md runs as written (one test per section).

The code inside each test is the snippet, copied verbatim; only the ``...`` placeholders
of the seed are filled in with minimal real code (marked ``# filled in``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib
import pytest

import metalab

matplotlib.use("Agg")


def test_minimal_working_example(capsys):
    import metalab

    @metalab.operation(name="pi_mc", version="0.1")
    def estimate_pi(params, seeds, capture):
        n = params["n_samples"]
        rng = seeds.numpy()
        x, y = rng.random(n), rng.random(n)
        pi_est = 4.0 * (x**2 + y**2 <= 1).mean()
        capture.metric("pi_estimate", pi_est)

    exp = metalab.Experiment(
        name="pi_mc",
        version="0.1",
        context={},
        operation=estimate_pi,
        params=metalab.grid(n_samples=[1000, 10000, 100000]),
        seeds=metalab.seeds(base=42, replicates=3),
    )

    result = metalab.run(exp)  # Stores results in ./runs/pi_mc
    print(result.table())

    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert "pi_estimate" in lines[0] and "n_samples" in lines[0]
    rows = lines[1:]
    assert len(rows) == 9
    assert sum("success" in r for r in rows) == 9
    estimates = [float(r.split()[4]) for r in rows]
    assert all(2.9 < e < 3.4 for e in estimates)
    assert Path("runs/pi_mc/manifest.json").exists()
    df = result.table(as_dataframe=True)
    assert sorted(df["n_samples"].tolist()) == [1000] * 3 + [10000] * 3 + [100000] * 3
    assert df["pi_estimate"].nunique() == 9  # 3 replicates x 3 sizes, all different streams


def test_parameter_sources():
    # Grid search (Cartesian product)
    params = metalab.grid(
        learning_rate=[0.001, 0.01, 0.1],
        batch_size=[32, 64],
    )  # 6 combinations
    assert len(params) == 6 and len(list(params)) == 6

    # Random sampling with distributions
    params = metalab.random(
        space={
            "learning_rate": metalab.loguniform(1e-4, 1e-1),
            "dropout": metalab.uniform(0.1, 0.5),
            "hidden_dim": metalab.choice([64, 128, 256]),
        },
        n_trials=20,
        seed=123,
    )
    configs = list(params)
    assert len(params) == 20 and len(configs) == 20
    assert all(c["hidden_dim"] in (64, 128, 256) for c in configs)

    # Explicit parameter list
    params = metalab.manual(
        [
            {"lr": 0.01, "epochs": 10},
            {"lr": 0.001, "epochs": 50},
        ]
    )
    assert list(params) == [{"lr": 0.01, "epochs": 10}, {"lr": 0.001, "epochs": 50}]


def test_reproducible_seeds():
    import numpy as np

    @metalab.operation(name="my_op")
    def my_operation(seeds):
        # Get a NumPy random generator
        rng = seeds.numpy()

        # Or a standard library random.Random
        rng = seeds.rng()

        # Derive sub-seeds for different components
        model_seed = seeds.derive("model")
        data_seed = seeds.derive("data_split")
        # filled in: use the derived streams
        assert int(model_seed) != int(data_seed)
        return {"draw": rng.random(), "model_draw": float(model_seed.numpy().random())}

    seeds = metalab.seeds(base=42, replicates=5)  # 5 independent runs per param config

    exp = metalab.Experiment(name="seeds_demo", operation=my_operation, seeds=seeds)
    result = metalab.run(exp)
    assert len(result) == 5
    draws = [r.metrics["draw"] for r in result]
    assert len(set(draws)) == 5
    for r in result:
        ss = np.random.SeedSequence(42).spawn(5)[r.replicate]
        assert r.seed == int(ss.generate_state(1, np.uint32)[0])
        assert r.metrics["model_draw"] == (
            metalab.SeedBundle(42, (r.replicate,)).derive("model").numpy().random()
        )


def test_capture_system():
    import matplotlib.pyplot as plt
    import numpy as np

    # filled in: the objects the snippet refers to
    losses = [0.9, 0.5, 0.3, 0.2]
    predictions_array = np.linspace(0.0, 1.0, 5)
    fig, ax = plt.subplots()
    ax.plot(losses)

    @metalab.operation(name="train")
    def train(params, seeds, capture):
        # Scalar metrics
        capture.metric("accuracy", 0.95)
        capture.metric("loss", 0.05)

        # Multiple metrics at once
        capture.metrics({"precision": 0.92, "recall": 0.89})

        # Time-series metrics
        for epoch, loss in enumerate(losses):
            capture.metric("train_loss", loss, step=epoch)

        # Artifacts (auto-serialized)
        capture.artifact("predictions", predictions_array)  # NumPy array
        capture.artifact("config", {"model": "resnet", "layers": 50})  # JSON

        # Matplotlib figures
        capture.figure("learning_curve", fig)

        # Log messages
        capture.log("Training completed successfully")

    exp = metalab.Experiment(name="capture_demo", operation=train)
    result = metalab.run(exp)
    plt.close(fig)
    run = result[0]
    assert run.status == "success", run.error
    assert run.metrics == {
        "accuracy": 0.95,
        "loss": 0.05,
        "precision": 0.92,
        "recall": 0.89,
        "train_loss": 0.2,
    }
    assert run.metric_series("train_loss").tolist() == losses
    assert run.metric_series("train_loss").index.tolist() == [0, 1, 2, 3]
    assert np.array_equal(run.artifact("predictions"), predictions_array)
    assert run.artifact("config") == {"model": "resnet", "layers": 50}
    png = run.artifact_path("learning_curve")
    assert png.suffix == ".png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Training completed successfully" in run.logs
    files = sorted(p.name for p in (Path("runs/capture_demo/artifacts") / run.run_id).iterdir())
    assert files == ["config.json", "learning_curve.png", "predictions.npy"]


def test_capture_rejects_unsupported_artifacts():
    @metalab.operation(name="bad_artifact")
    def op(capture):
        capture.artifact("thing", object())

    res = metalab.run(metalab.Experiment(name="bad_artifact", operation=op))
    err = res[0].error
    assert res[0].status == "failed" and err["type"] == "UnsupportedArtifactError"
    assert ".npy" in err["message"] and ".json" in err["message"]


def _results_experiment() -> metalab.Experiment:
    """filled in: the experiment the Results snippet runs (``exp``)."""

    @metalab.operation(name="fit", version="1")
    def fit(params, seeds, capture):
        rng = seeds.numpy()
        score = 1.0 - params["learning_rate"] + 0.01 * rng.random()
        capture.metric("score", score)
        capture.artifact("predictions", rng.random(3))
        capture.log(f"lr={params['learning_rate']}")

    return metalab.Experiment(
        name="my_exp",
        operation=fit,
        params=metalab.grid(learning_rate=[0.001, 0.01, 0.1], batch_size=[32]),
        seeds=metalab.seeds(base=1, replicates=3),
    )


def test_results_api(capsys):
    import numpy as np
    import pandas as pd

    exp = _results_experiment()

    result = metalab.run(exp)

    # Access individual runs
    run = result[0]
    print(run.metrics)
    artifact = run.artifact("predictions")

    # Tabular view
    df = result.table(as_dataframe=True)

    # Filter runs
    successful = result.successful
    filtered = result.filter(learning_rate=0.01)

    # Summary and display
    result.display(group_by=["learning_rate"])

    # Export
    result.to_csv("results.csv")

    # Load previous results
    old_results = metalab.load_results("./runs/my_exp")

    out = capsys.readouterr().out
    assert str(run.metrics) in out
    assert set(run.metrics) == {"score"}
    assert isinstance(artifact, np.ndarray) and artifact.shape == (3,)
    assert isinstance(df, pd.DataFrame) and len(df) == 9
    assert {"run_id", "learning_rate", "batch_size", "score"} <= set(df.columns)
    assert len(successful) == 9
    assert len(filtered) == 3 and {r.params["learning_rate"] for r in filtered} == {0.01}
    # display: one row per learning rate with mean, std and count across replicates
    for lr in ("0.001", "0.01", "0.1"):
        assert re.search(rf"\b{re.escape(lr)}\b", out), lr
    assert "score" in out
    summary = result.summary(group_by=["learning_rate"])
    assert summary["score_count"].tolist() == [3, 3, 3]
    for mean in summary["score_mean"]:
        assert f"{mean:.3f}"[:-1] in out  # each group's mean is printed
    csv = pd.read_csv("results.csv")
    assert len(csv) == 9 and sorted(csv["run_id"]) == sorted(df["run_id"])
    assert len(old_results) == 9
    assert sorted(old_results.table(as_dataframe=True)["run_id"]) == sorted(df["run_id"])


def test_resume_and_deduplication(tmp_path):
    side_channel = tmp_path / "executions.log"

    @metalab.operation(name="count_me")
    def count_me(params):
        with open(side_channel, "a") as f:  # filled in: count executions outside the process
            f.write(f"{params['i']}\n")
        return {"i2": params["i"] ** 2}

    exp = metalab.Experiment(  # filled in: 100 configurations
        name="resume_demo",
        operation=count_me,
        params=metalab.grid(i=list(range(100))),
    )

    # First run: executes all 100 configurations
    result = metalab.run(exp, resume=True)
    assert len(side_channel.read_text().splitlines()) == 100
    assert len(result) == 100

    # Second run: skips completed, only runs new/failed
    result = metalab.run(exp, resume=True)
    assert len(side_channel.read_text().splitlines()) == 100  # nothing executed again
    assert len(result) == 100
    assert result.table(as_dataframe=True)["run_id"].is_unique


def test_progress_display(capsys):
    @metalab.operation(name="tick")
    def tick(params, capture):
        capture.metric("v", params["v"])

    exp = metalab.Experiment(
        name="progress_demo", operation=tick, params=metalab.grid(v=list(range(7)))
    )

    result = metalab.run(exp, progress=True)

    assert len(result) == 7
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "progress_demo" in text and "7/7" in text


def test_custom_context(capsys):
    @metalab.operation(name="my_op")
    def my_operation(seeds):  # the operation of the seeds section
        return {"draw": float(seeds.numpy().random())}

    @metalab.context_spec
    class DataContext:
        dataset_path: str
        vocab_size: int = 10000

    exp = metalab.Experiment(
        name="nlp_exp",
        context=DataContext(dataset_path="data/train.csv"),
        operation=my_operation,
        params=metalab.grid(hidden=[64, 128]),
        seeds=metalab.seeds(base=42),
    )

    # Fingerprint is auto-computed
    print(exp.context.fingerprint)

    out = capsys.readouterr().out.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", out)
    assert out == DataContext(dataset_path="data/train.csv").fingerprint
    assert len(metalab.run(exp).successful) == 2


@pytest.mark.cluster
def test_parallel_execution():
    @metalab.operation(name="pi_mc", version="0.1")
    def estimate_pi(params, seeds, capture):
        n = params["n_samples"]
        rng = seeds.numpy()
        x, y = rng.random(n), rng.random(n)
        capture.metric("pi_estimate", 4.0 * (x**2 + y**2 <= 1).mean())

    exp = metalab.Experiment(
        name="pi_mc",
        version="0.1",
        context={},
        operation=estimate_pi,
        params=metalab.grid(n_samples=[1000, 10000, 100000]),
        seeds=metalab.seeds(base=42, replicates=3),
    )

    from metalab import ProcessExecutor

    result = metalab.run(
        exp,
        executor=ProcessExecutor(max_workers=2),
    )

    assert len(result.successful) == 9
    # the same numbers as the in-process executor
    local = metalab.run(exp, store="./local", resume=False)
    a = result.table(as_dataframe=True).set_index("run_id")["pi_estimate"].sort_index()
    b = local.table(as_dataframe=True).set_index("run_id")["pi_estimate"].sort_index()
    assert a.tolist() == b.tolist()


def test_custom_storage():
    exp = _results_experiment()  # filled in: any experiment

    result = metalab.run(exp, store="./my_experiments/run_001")

    # Load previous results
    result = metalab.load_results("./my_experiments/run_001")

    assert len(result) == 9
    assert Path("my_experiments/run_001/manifest.json").exists()
    assert (
        json.loads(Path("my_experiments/run_001/manifest.json").read_text())["experiment"]
        == "my_exp"
    )
    assert not Path("runs").exists()
