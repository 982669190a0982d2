"""A 1,000-run sweep on SLURM worker jobs, submitted and cleaned up by metalab.

Run it on a SLURM login node (or inside an `sbatch` job to submit and walk away):

    python examples/slurm_sweep.py            # 2 one-core worker jobs
    python -c "import metalab; print(metalab.load_results('runs/slurm_sweep').counts())"

The operation and the context class live in this script, which the workers cannot
import: metalab ships them by value.  Interrupt it and start it again: finished runs
are skipped.
"""

import os

import numpy as np

import metalab

SMALL = os.environ.get("METALAB_EXAMPLE_SMALL") == "1"  # the test suite's tiny size


@metalab.context_spec
class Signal:
    """A shared, read-only input: sent once per worker, not once per run."""

    x: np.ndarray


@metalab.operation(name="noisy_mean", version="1")
def noisy_mean(params, seeds, context, capture):
    rng = seeds.numpy()
    noise = rng.normal(0.0, params["sigma"], size=context.x.shape)
    capture.metric("mean", float((context.x + noise).mean()))


exp = metalab.Experiment(
    name="slurm_sweep",
    version="1",
    context=Signal(x=np.linspace(0.0, 1.0, 10_000)),
    operation=noisy_mean,
    params=metalab.grid(sigma=[0.01, 0.1, 1.0, 10.0]),
    seeds=metalab.seeds(base=2024, replicates=5 if SMALL else 250),  # 4 x 250 = 1,000 runs
)

if __name__ == "__main__":
    executor = metalab.SlurmExecutor(
        cores=1,
        memory="1GB",
        walltime="00:30:00",
        jobs=1 if SMALL else 2,
        # On a single machine keep traffic on loopback; on a cluster use e.g. "ib0".
        interface="lo",
    )
    print(executor.job_script())
    result = metalab.run(exp, executor=executor, progress=True)
    print(result.table())
