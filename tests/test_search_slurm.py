"""A search on the real local SLURM through SlurmExecutor (issue 14).

The operation lives in this test module, which SLURM workers cannot import: it reaches
them by value, and the pruner's decisions read the other runs from the shared store.
"""

from __future__ import annotations

import os
import uuid

import pytest

import metalab
from metalab import SlurmExecutor

pytestmark = pytest.mark.slurm
optuna = pytest.importorskip("optuna")


@metalab.operation(name="slurm_search_op", version="1")
def slurm_search_op(params, capture):
    capture.metric("on_slurm", float("SLURM_JOB_ID" in os.environ))
    for epoch in range(6):
        capture.metric("loss", (params["x"] - 1.0) ** 2 + 1.0 / (epoch + 1), step=epoch)
        if capture.should_stop():
            break


def test_search_on_slurm_with_pruning(tmp_path):
    ex = SlurmExecutor(
        cores=1,
        memory="1GB",
        walltime="00:10:00",
        interface="lo",
        worker_timeout_s=90,
        job_name=f"mlsearch-{uuid.uuid4().hex[:6]}",
        jobs=2,
    )
    params = metalab.optimize(
        {"x": metalab.uniform(-3, 3)}, metric="loss", n_trials=10, seed=4, pruner="median"
    )
    exp = metalab.Experiment(
        name="slurm_search", version="1", operation=slurm_search_op, params=params
    )
    result = metalab.run(exp, executor=ex, store=tmp_path / "s")
    df = result.to_pandas(full=True)
    assert len(df) == 10 and set(df["status"]) <= {"success", "pruned"}
    assert (df["on_slurm"] == 1.0).all()
    assert sorted(df["trial"]) == list(range(10))
    best = result.best()
    assert best["value"] == result.trials().query("status == 'complete'")["loss"].min()
    again = metalab.run(exp, store=tmp_path / "s")  # resume: nothing new, no job needed
    assert len(again) == 10
