"""A store on S3 against a store in a local folder: requests, time, bytes fetched.

    uv run python benchmarks/s3.py                # 100k trivial runs
    uv run python benchmarks/s3.py --smoke        # 2,000 runs: the script must not rot

Starts its own S3 API server (moto's, as the tests do: tests/s3_server.py) on 127.0.0.1
and counts on the server side every request and the body bytes it sends back, whoever
makes them (the driver or a worker).  One process, default executor, the same sweep of
N trivial runs (grid ``a`` x ``x``, ``a`` = 100 values, slowest axis; one metric):

* requests per 1,000 runs written: every request of the sweep into the bucket, by method;
* time of the sweep into a local temp folder, then into the S3 server, and their ratio;
* bytes fetched by ``load_results(url).filter(a=7)`` (1% of the runs) and by a full read,
  against the size of the store's record files; again with
  ``storage_options={"default_cache_type": "none"}`` (s3fs's default read-ahead cache
  fetches a whole block for each range read).

moto keeps objects in memory on loopback: the times are metalab's own cost of talking
S3 (HTTP, signing, whole-object uploads), not a cloud network's latency.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import machine, print_table, tmpdir
from s3_server import MotoServer, client_env

import metalab


@metalab.operation(name="one_metric", version="1")
def one_metric(params, capture):
    """The trivial run: one metric."""
    capture.metric("y", params["a"] * params["x"])


def experiment(n: int) -> metalab.Experiment:
    a = 100
    return metalab.Experiment(
        name="s3_bench",
        operation=one_metric,
        params=metalab.grid(a=list(range(a)), x=list(range(max(1, n // a)))),
    )


def sweep(store: str, n: int) -> float:
    t0 = time.perf_counter()
    res = metalab.run(experiment(n), store=store, progress=False)
    elapsed = time.perf_counter() - t0
    assert res.counts()["success"] == n, res.counts()
    return elapsed


def record_bytes(url: str) -> tuple[int, int]:
    """(files, bytes) of the store's record files, listed with plain s3fs."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    sizes = [fs.info(k)["size"] for k in fs.glob(f"{url.removeprefix('s3://')}/records/*.parquet")]
    return len(sizes), sum(sizes)


def fetched(
    server: MotoServer, url: str, options: dict[str, str] | None = None, **equals: object
) -> tuple[int, int, int]:
    """(rows, requests, bytes sent by the server) of one read of the records."""
    server.reset()
    res = metalab.load_results(url, storage_options=options)
    if equals:
        res = res.filter(**equals)
    rows = len(res.table(as_dataframe=True))
    counts = server.counts()
    return rows, counts.get("requests", 0), counts.get("bytes_out", 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--smoke", action="store_true", help="2,000 runs")
    args = ap.parse_args()
    n = 2_000 if args.smoke else args.runs
    n -= n % 100
    print(f"# metalab on S3 (moto server on loopback)\n\nmachine: {machine()}")
    with tmpdir() as d, MotoServer(log=d / "moto.log") as server:
        os.environ.update(client_env(server.endpoint, d))
        import s3fs

        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        s3fs.S3FileSystem(skip_instance_cache=True).mkdir(bucket)
        url = f"s3://{bucket}/store"
        sweep(str(d / "warm"), 200)  # imports and first-call costs, outside the timings
        t_local = sweep(str(d / "local"), n)
        server.reset()
        t_s3 = sweep(url, n)
        written = server.counts()
        files, size = record_bytes(url)
        full = fetched(server, url)
        one = fetched(server, url, a=7)
        # s3fs's default read-ahead cache fetches whole blocks (50 MiB) per range read.
        uncached = {"default_cache_type": "none"}
        full_nc, one_nc = fetched(server, url, uncached), fetched(server, url, uncached, a=7)

    total = written.pop("requests", 0)
    written.pop("bytes_out", None)
    by_method = ", ".join(f"{m} {c * 1000 / n:,.1f}" for m, c in sorted(written.items()))
    print_table(
        f"Writing {n:,} runs (default executor, one process)",
        ["store", "time (s)", "runs/s", "requests per 1,000 runs"],
        [
            ["local folder", t_local, n / t_local, "-"],
            ["S3 (moto)", t_s3, n / t_s3, f"{total * 1000 / n:,.1f} ({by_method})"],
            ["S3 / local", t_s3 / t_local, "", ""],
        ],
    )
    reads = [
        ("full", full),
        ("filter(a=7): 1%", one),
        ("full, default_cache_type='none'", full_nc),
        ("filter(a=7), default_cache_type='none'", one_nc),
    ]
    print_table(
        f"Reading the S3 store ({files} record files, {size:,} bytes)",
        ["read", "rows", "requests", "bytes fetched", "of the record files"],
        [[w, r[0], r[1], f"{r[2]:,}", f"{r[2] / size:.1%}"] for w, r in reads],
    )


if __name__ == "__main__":
    main()
