"""Estimate pi by Monte Carlo: 3 sample sizes x 3 replicates (the seed's minimal example)."""

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

if __name__ == "__main__":
    result = metalab.run(exp)  # Stores results in ./runs/pi_mc
    print(result.table())
