"""Stores on object storage (issue 16, item 5), against a real S3 API server.

moto's standalone server runs on 127.0.0.1 (tests/s3_server.py); metalab reaches it
through s3fs with the ``AWS_*`` environment the fixture sets, as a user's code would.
Real processes throughout: a sweep on a ``ProcessExecutor``, a driver SIGKILLed
mid-sweep and resumed, two drivers on one store, the CLI.  The operations of the
driver scripts append one line per execution to a side-channel file, so the tests
count how often every run executed.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from faults._faults import finish
from s3_server import KEY_ID, SECRET, MotoServer, client_env

import metalab
from metalab.store.journal import Journal
from metalab.store.records import SUCCESS

pytestmark = pytest.mark.s3

#: Upper bound on how long a helper waits for an event (not a test threshold).
WAIT_S = 300.0
N_SWEEP = 24


def _blob(x: int) -> bytes:
    return hashlib.sha256(str(x).encode()).digest() * (x + 1)


@metalab.operation(name="s3_op", version="1")
def s3_op(params, capture):
    x = params["x"]
    capture.metric("y", x * 2)
    for step in range(3):
        capture.metric("loss", 1.0 / (x + step + 1), step=step)
    capture.artifact("blob", _blob(x))
    capture.artifact("arr", np.arange(x + 1))


_FS: list[Any] = []


def _fs() -> Any:
    """A plain s3fs client of the session's server (not metalab's), its listings fresh."""
    import s3fs

    if not _FS:
        _FS.append(s3fs.S3FileSystem(skip_instance_cache=True))
    _FS[0].invalidate_cache()
    return _FS[0]


def _objects(url: str) -> dict[str, bytes]:
    """Every object below ``url`` (store-relative key -> bytes), read with plain s3fs."""
    fs, root = _fs(), url.removeprefix("s3://")
    return {k[len(root) + 1 :]: fs.cat_file(k) for k in fs.find(root)}


def _raw_run_ids(url: str) -> collections.Counter[str]:
    """How many records each run id has in the bucket's Parquet files (no dedup)."""
    fs, root = _fs(), url.removeprefix("s3://")
    ids: collections.Counter[str] = collections.Counter()
    for key in fs.glob(f"{root}/records/*.parquet"):
        ids.update(pq.read_table(key, columns=["run_id"], filesystem=fs)["run_id"].to_pylist())
    return ids


# -- one sweep on a ProcessExecutor, read by several tests --------------------------------
@pytest.fixture(scope="module")
def workers(s3_server: MotoServer) -> Iterator[metalab.ProcessExecutor]:
    """ProcessExecutor(max_workers=2), its cluster started once for the module's sweeps
    (its worker processes inherit the session server's AWS_* environment)."""
    with metalab.ProcessExecutor(max_workers=2) as executor:
        yield executor


@pytest.fixture(scope="module")
def swept(
    workers: metalab.ProcessExecutor, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A 24-run sweep on ProcessExecutor(max_workers=2) into a fresh bucket; its URL."""
    url = f"s3://bucket-{uuid.uuid4().hex[:16]}/sweep"
    _fs().mkdir(url.removeprefix("s3://").split("/")[0])
    cwd = tmp_path_factory.mktemp("cwd")
    old = os.getcwd()
    os.chdir(cwd)
    try:
        exp = metalab.Experiment("s3exp", s3_op, params=metalab.grid(x=list(range(N_SWEEP))))
        res = metalab.run(exp, store=url, executor=workers, partition_size=6)
        assert res.counts() == {"success": N_SWEEP, "failed": 0, "pending": 0}
        assert sorted(p.name for p in cwd.iterdir()) == []  # no local "s3:" folder
    finally:
        os.chdir(old)
    yield url


def test_process_sweep_writes_records_metrics_and_artifacts_to_the_bucket(swept):
    objects = _objects(swept)
    keys = sorted(objects)
    assert "manifest.json" in keys
    assert len([k for k in keys if k.startswith("records/") and k.endswith(".parquet")]) == 4
    assert [k for k in keys if k.startswith("metrics/")], keys
    assert not [k for k in keys if k.startswith("journal/")], "journals left behind"
    assert not [k for k in keys if k.endswith(".payload")], "shipped payload left behind"
    # Exactly one record per run in the bucket itself, before any reader deduplicates.
    raw = _raw_run_ids(swept)
    assert len(raw) == N_SWEEP and set(raw.values()) == {1}
    res = metalab.load_results(swept)
    assert len(res) == N_SWEEP and res.counts()["success"] == N_SWEEP
    table = res.to_pandas()
    assert sorted(table["x"]) == list(range(N_SWEEP))
    assert (table["y"] == 2 * table["x"]).all()
    assert set(raw) == set(table["run_id"])
    for run in res:
        folder = f"artifacts/{run.run_id}/"
        assert len([k for k in keys if k.startswith(folder)]) == 2, run.run_id
    series = res.metric_frame("loss").compute()
    assert len(series) == 3 * N_SWEEP
    # The credentials the processes used are nowhere in the store (provenance, logs...).
    leaks = [k for k, v in objects.items() if SECRET.encode() in v or KEY_ID.encode() in v]
    assert not leaks, leaks


def test_artifacts_round_trip_with_checksums(swept):
    objects = _objects(swept)
    res = metalab.load_results(swept)
    for run in res:
        x = run.params["x"]
        assert run.artifact("blob") == _blob(x)
        np.testing.assert_array_equal(run.artifact("arr"), np.arange(x + 1))
        for entry in run.artifacts:
            data = objects[entry["path"]]
            assert entry["size"] == len(data)
            assert entry["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_damaged_artifact_in_the_bucket_is_detected(swept):
    run = next(iter(metalab.load_results(swept).filter(x=5)))
    entry = next(a for a in run.artifacts if a["name"] == "blob")
    key = f"{swept.removeprefix('s3://')}/{entry['path']}"
    fs = _fs()
    good = fs.cat_file(key)
    fs.pipe_file(key, good[:-1] + bytes([good[-1] ^ 1]))  # same size, one bit flipped
    try:
        fresh = next(iter(metalab.load_results(swept).filter(x=5)))
        with pytest.raises(metalab.ArtifactIntegrityError, match="sha256"):
            fresh.artifact("blob")
    finally:
        fs.pipe_file(key, good)
    assert next(iter(metalab.load_results(swept).filter(x=5))).artifact("blob") == _blob(5)


def test_load_results_with_a_filter(swept):
    res = metalab.load_results(swept)
    one = res.filter(x=5)
    assert len(one) == 1 and next(iter(one)).metrics["y"] == 10
    some = res.query("x >= 20")
    assert sorted(some.to_pandas()["x"]) == [20, 21, 22, 23]
    assert len(res.filter(x=999)) == 0


def test_the_bucket_is_readable_by_pyarrow_duckdb_and_polars_directly(swept):
    """What docs/stores.md shows: the records are plain Parquet, read straight from the
    bucket and deduplicated by run_id (highest attempt, then latest ended_at)."""
    import duckdb
    import polars as pl

    fs, root = _fs(), swept.removeprefix("s3://")
    assert pq.read_table(f"{root}/records/", filesystem=fs).num_rows == N_SWEEP
    con = duckdb.connect()
    con.register_filesystem(fs)  # DuckDB reads s3:// through s3fs (no httpfs needed)
    latest = con.sql(f"""
        SELECT * FROM read_parquet('{swept}/records/*.parquet', union_by_name = true)
        QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY attempt DESC, ended_at DESC) = 1
    """).df()
    assert sorted(latest["params.x"]) == list(range(N_SWEEP))
    options = {
        "aws_endpoint_url": os.environ["AWS_ENDPOINT_URL"],
        "aws_allow_http": "true",
        "aws_region": "us-east-1",
    }
    files = [f"s3://{k}" for k in fs.glob(f"{root}/records/*.parquet")]
    records = pl.concat(
        [pl.scan_parquet(f, storage_options=options) for f in files], how="diagonal_relaxed"
    )
    frame = (
        records.sort(["attempt", "ended_at"])
        .unique(subset="run_id", keep="last", maintain_order=True)
        .collect()
    )
    assert frame.height == N_SWEEP
    assert sorted(frame["params.x"].to_list()) == list(range(N_SWEEP))


def test_a_reader_sees_what_another_process_wrote_since_it_last_read(s3_store):
    exp = metalab.Experiment("seen", ok_op, params=metalab.grid(x=[1, 2, 3]))
    metalab.run(exp, store=s3_store, progress=False)
    assert len(metalab.load_results(s3_store)) == 3
    # Another writer (its own connection) adds a records file: a copy, same run ids.
    fs, root = _fs(), s3_store.removeprefix("s3://")
    (first,) = fs.glob(f"{root}/records/*.parquet")
    fs.copy(first, f"{root}/records/zz-copy-by-another-process.parquet")
    res = metalab.load_results(s3_store)
    assert len(res) == 3 and res.counts()["success"] == 3


@metalab.operation(name="grid_op", version="1")
def grid_op(params, capture):
    capture.metric("y", params["a"] * params["x"])


def test_a_full_read_costs_requests_per_file_not_per_run(s3_server, s3_store):
    """Two one-file stores, of 100 and 2,000 runs: reading either takes about as many
    requests (counted by the server)."""
    reads = []
    for n in (100, 2_000):
        url = f"{s3_store}-{n}"
        exp = metalab.Experiment("g", grid_op, params=metalab.grid(a=range(100), x=range(n // 100)))
        metalab.run(exp, store=url, progress=False)
        assert len(_fs().glob(f"{url.removeprefix('s3://')}/records/*.parquet")) == 1
        s3_server.reset()
        assert len(metalab.load_results(url).table(as_dataframe=True)) == n
        reads.append(s3_server.counts())
    # 20 times the runs, a few more requests: the small file's data comes with its footer
    # in the one ranged read of its last 16 KiB, the larger one's column chunks in ranged
    # reads of their own (s3fs reads no further ahead than asked).
    assert reads[1]["requests"] <= reads[0]["requests"] + 3, reads
    assert reads[1]["requests"] <= 16, reads


def test_a_selective_filter_fetches_a_fraction_of_the_records(s3_server, s3_store):
    """34,000 runs compacted into one file of row groups of 16,384, 16,384 and 1,232
    rows; a 1% filter on the slowest axis (``a=99``) needs the last row group and the
    footer (a 16 KiB ranged read for its checksum, pyarrow's own 64 KiB read)."""
    from metalab.store import Store

    n = 34_000
    exp = metalab.Experiment("p", grid_op, params=metalab.grid(a=range(100), x=range(n // 100)))
    metalab.run(exp, store=s3_store, progress=False)
    store = Store.open(s3_store)  # 9 files (partitions of 4,096 runs): compacted as at 16
    assert store.compact(at_files=2) == 9
    store.sync()
    fs, root = _fs(), s3_store.removeprefix("s3://")
    size = sum(fs.info(k)["size"] for k in fs.glob(f"{root}/records/*.parquet"))
    s3_server.reset()
    assert len(metalab.load_results(s3_store).filter(a=99).table(as_dataframe=True)) == n // 100
    fetched = s3_server.counts()["bytes_out"]
    assert fetched < size / 4, f"a 1% filter fetched {fetched:,} bytes of {size:,}"


def test_compaction_on_s3_loses_no_row_to_a_concurrent_reader(s3_store, monkeypatch):
    """A frame planned over 20 record files, then another driver compacts them into one
    (merged file uploaded first, inputs deleted after): the old frame says so clearly, a
    new read sees every run, and no record was lost or doubled."""
    from metalab.store import Store

    exp = metalab.Experiment("compact", ok_op, params=metalab.grid(x=list(range(20))))
    with monkeypatch.context() as m:  # the sweep's own compaction off: 20 files stay
        m.setattr(Store, "compact", lambda self, **kw: 0)
        metalab.run(exp, store=s3_store, partition_size=1, progress=False)
    root = s3_store.removeprefix("s3://")
    assert len(_fs().glob(f"{root}/records/*.parquet")) == 20
    stale = metalab.load_results(s3_store)
    frame = stale.frame  # its partitions name the 20 files
    other = Store.open(s3_store)  # another driver: compacts, and uploads the result
    assert other.compact() == 20
    other.sync()
    assert len(_fs().glob(f"{root}/records/*.parquet")) == 1
    with pytest.raises(metalab.StoreError, match="compacted away"):
        frame.compute()
    assert sorted(metalab.load_results(s3_store).frame.compute()["x"]) == list(range(20))
    assert sorted(stale.reload().frame.compute()["x"]) == list(range(20))
    assert set(_raw_run_ids(s3_store).values()) == {1}


# -- the CLI ------------------------------------------------------------------------------
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metalab", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_cli_show_table_and_report_on_an_s3_store(swept, tmp_path):
    show = _cli("show", swept, cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    assert swept in show.stdout and str(N_SWEEP) in show.stdout
    table = _cli("table", swept, "--filter", "x>=22", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    rows = [ln for ln in table.stdout.splitlines() if "success" in ln]
    assert len(rows) == 2, table.stdout
    report = _cli("report", swept, "-o", "r.html", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "r.html").read_text()
    assert "s3exp" in html and SECRET not in html
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # nothing else written


# -- drivers in subprocesses: SIGKILL and resume, two drivers at once ----------------------
DRIVER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import metalab

    LOG = os.environ["SIDE_LOG"]
    if os.environ.get("SIDE_GO"):  # a barrier: every driver imports, then all start
        Path(os.environ["SIDE_GO"] + f".ready-{os.getpid()}").touch()
        while not os.path.exists(os.environ["SIDE_GO"]):
            time.sleep(0.005)

    @metalab.operation(name="side", version="1")
    def side(params, capture):
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"start {params['x']} {os.getpid()}\\n".encode())
        if os.environ.get("SIDE_HANG_AT") == str(params["x"]):
            time.sleep(600)  # until SIGKILLed
        time.sleep(float(os.environ["SIDE_SLEEP"]))
        os.write(fd, f"end {params['x']} {os.getpid()}\\n".encode())
        os.close(fd)
        capture.metric("y", params["x"] * 2)

    n = int(os.environ["SIDE_N"])
    exp = metalab.Experiment("side", side, params=metalab.grid(x=list(range(n))))
    res = metalab.run(exp, store=sys.argv[1], partition_size=int(os.environ["SIDE_PART"]),
                      progress=False)
    print(res.counts(), flush=True)
    """
)


def _events(log: Path) -> list[tuple[str, int, int]]:
    try:
        lines = log.read_text().split("\n")[:-1]
    except FileNotFoundError:
        return []
    return [(a, int(x), int(p)) for a, x, p in (ln.split() for ln in lines)]


def _driver(tmp_path: Path, url: str, n: int, **env: str) -> subprocess.Popen[str]:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    full = {**os.environ, "SIDE_LOG": str(tmp_path / "side.log"), "SIDE_N": str(n), **env}
    return subprocess.Popen(
        [sys.executable, str(script), url],
        cwd=tmp_path,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen[str]) -> None:
    code, _, err = finish(proc, WAIT_S)
    assert code == 0, err


def _uploaded_successes(url: str, scratch: Path, *, records: bool = True) -> set[str]:
    """Run ids whose success is in the bucket: in a journal batch or a records file."""
    fs, root = _fs(), url.removeprefix("s3://")
    done: set[str] = set()
    for key in fs.glob(f"{root}/journal/*.jsonl"):
        local = scratch / key.rsplit("/", 1)[1]
        local.write_bytes(fs.cat_file(key))
        done.update(o[0] for o in Journal(local).outcomes if o[1] == SUCCESS)
    if records:
        done.update(_raw_run_ids(url))
    return done


def test_sigkilled_driver_resumes_without_running_uploaded_batches_again(s3_store, tmp_path):
    """The victim uploads its journal every 8 runs (by count; the 600 s time bound never
    fires) and hangs in run 50, mid-partition; SIGKILLed there, it lost at most the 8
    runs since its last batch, and the next driver runs none of the uploaded ones."""
    n, batch, hang = 80, 8, 50
    env = {
        "SIDE_SLEEP": "0.03",
        "SIDE_PART": "20",
        "METALAB_REMOTE_BATCH_RUNS": str(batch),
        "METALAB_REMOTE_BATCH_S": "600",
    }
    victim = _driver(tmp_path, s3_store, n, SIDE_HANG_AT=str(hang), **env)
    log = tmp_path / "side.log"
    deadline = time.monotonic() + WAIT_S
    try:
        while ("start", hang) not in {(w, x) for w, x, _ in _events(log)}:
            assert victim.poll() is None, victim.communicate()
            assert time.monotonic() < deadline, "the victim never reached its hanging run"
            time.sleep(0.1)
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.communicate()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    uploaded = _uploaded_successes(s3_store, scratch)  # the hanging victim uploaded no more
    ended_by_victim = {x for w, x, _ in _events(log) if w == "end"}
    assert hang not in ended_by_victim and len(ended_by_victim) >= 10
    _finish(_driver(tmp_path, s3_store, n, **env))

    res = metalab.load_results(s3_store)
    assert res.counts() == {"success": n, "failed": 0, "pending": 0}
    raw = _raw_run_ids(s3_store)
    assert len(raw) == n and set(raw.values()) == {1}, "a run has two records"
    x_of = {r.run_id: r.params["x"] for r in res}
    assert uploaded <= set(x_of)
    uploaded_x = {x_of[r] for r in uploaded}
    # The hanging partition (runs 40-59, in order) had uploaded batches of its journal.
    assert uploaded_x & set(range(40, hang)), sorted(uploaded_x)
    lost = ended_by_victim - uploaded_x
    assert len(lost) <= batch, f"lost more than a batch: {sorted(lost)}"
    starts = collections.Counter(x for w, x, _ in _events(log) if w == "start")
    assert set(starts) == set(range(n))
    again = {x for x in uploaded_x if starts[x] > 1}
    assert not again, f"runs of an uploaded batch executed again: {sorted(again)}"
    # What ran twice is what the kill lost: finished after the last upload, or in flight.
    assert {x for x, c in starts.items() if c > 1} <= lost | {hang}


def test_two_drivers_on_one_store_leave_one_record_per_run(s3_store, tmp_path):
    n = 60
    go = tmp_path / "go"
    env = {"SIDE_SLEEP": "0.02", "SIDE_PART": "10", "SIDE_GO": str(go)}
    procs = [_driver(tmp_path, s3_store, n, **env) for _ in range(2)]
    try:
        deadline = time.monotonic() + WAIT_S
        while len(list(tmp_path.glob("go.ready-*"))) < 2:
            for p in procs:
                assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "drivers never got ready"
            time.sleep(0.02)
        go.touch()
        for p in procs:
            _finish(p)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    res = metalab.load_results(s3_store)
    # ("pending" is left out: it counts the latest sweep's planned runs whose current
    # record is not its own, so it depends on which driver's record of a run won.)
    counts = res.counts()
    assert (counts["success"], counts["failed"]) == (n, 0), counts
    table = res.to_pandas()
    assert len(table) == n and table["run_id"].is_unique
    assert sorted(table["x"]) == list(range(n))
    # No leases on object stores: both drivers may have run a run, each run at least once.
    starts = collections.Counter(x for w, x, _ in _events(tmp_path / "side.log") if w == "start")
    assert set(starts) == set(range(n))
    assert set(_raw_run_ids(s3_store)) == set(table["run_id"])


# -- errors: missing bucket, wrong credentials, credentials in the URL ----------------------
@metalab.operation(name="never", version="1")
def never(params):
    raise AssertionError("ran although the store could not be opened")


def _tiny() -> metalab.Experiment:
    return metalab.Experiment("tiny", never, params=metalab.grid(x=[1, 2]))


def test_a_missing_bucket_fails_at_once_naming_the_url(s3_server, tmp_path):
    url = f"s3://no-such-bucket-{uuid.uuid4().hex[:12]}/store"
    s3_server.reset()
    with pytest.raises(metalab.StoreError) as info:
        metalab.run(_tiny(), store=url)
    assert url in str(info.value) and "does not exist" in str(info.value)
    assert info.value.errno == errno.ENOENT
    with pytest.raises(metalab.StoreError, match="does not exist") as info:
        metalab.load_results(url)
    assert url in str(info.value)
    assert s3_server.counts().get("requests", 0) <= 6  # at once: no retries, no listing
    assert list(tmp_path.iterdir()) == []
    assert not _fs().exists(url.removeprefix("s3://").split("/")[0])


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """A second moto server that checks credentials: ``(endpoint, key id, secret)`` of
    a user allowed ``s3:*`` (made by the first three requests, which go unchecked)."""
    import boto3

    with MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"}) as server:
        kw = {"endpoint_url": server.endpoint, "region_name": "us-east-1"}
        iam = boto3.client("iam", aws_access_key_id="a", aws_secret_access_key="b", **kw)
        iam.create_user(UserName="u")
        key = iam.create_access_key(UserName="u")["AccessKey"]
        policy = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
        iam.put_user_policy(
            UserName="u",
            PolicyName="all",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [policy]}),
        )
        key_id, secret = key["AccessKeyId"], key["SecretAccessKey"]
        s3 = boto3.client("s3", aws_access_key_id=key_id, aws_secret_access_key=secret, **kw)
        s3.create_bucket(Bucket="guarded")
        yield server.endpoint, key_id, secret


@metalab.operation(name="ok", version="1")
def ok_op(params):
    return {"y": params["x"]}


def test_wrong_credentials_fail_at_once_without_showing_the_secret(auth_server, workers, tmp_path):
    endpoint, key_id, secret = auth_server
    url = "s3://guarded/store"
    good = {"key": key_id, "secret": secret, "endpoint_url": endpoint}
    exp = metalab.Experiment("okexp", ok_op, params=metalab.grid(x=[1, 2]))
    # Worker processes whose environment holds other credentials (the session server's):
    # storage_options reach them with the task graph.
    res = metalab.run(exp, store=url, storage_options=good, executor=workers)
    assert res.counts()["success"] == 2
    wrong_secret = "wrong-" + uuid.uuid4().hex
    for bad in ({**good, "secret": wrong_secret}, {**good, "key": "AKIA" + wrong_secret}):
        with pytest.raises(metalab.StoreError) as info:
            metalab.run(_tiny(), store=url, storage_options=bad)
        shown = str(info.value)
        assert url in shown and "credentials" in shown and info.value.errno == errno.EACCES
        assert wrong_secret not in shown and secret not in shown
        with pytest.raises(metalab.StoreError, match="credentials") as info:
            metalab.load_results(url, storage_options=bad)
        assert wrong_secret not in str(info.value)
    # From the environment, as in a script: the same error on stderr, no secret in it.
    env = {**client_env(endpoint, tmp_path), "AWS_SECRET_ACCESS_KEY": wrong_secret}
    env["AWS_ACCESS_KEY_ID"] = key_id
    script = f"import metalab; metalab.load_results({url!r})"
    r = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert r.returncode != 0 and "StoreError" in r.stderr and url in r.stderr
    assert wrong_secret not in r.stderr + r.stdout
    # The good credentials were not written into the store either.
    objects = _objects_with(url, good)
    assert objects and not [k for k, v in objects.items() if secret.encode() in v]


def _objects_with(url: str, options: dict[str, str]) -> dict[str, bytes]:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    root = url.removeprefix("s3://")
    return {k: fs.cat_file(k) for k in fs.find(root)}


@pytest.mark.parametrize(
    "url",
    [
        "s3://AKIAEXAMPLE:s3cr3t-in-url@bucket/x",
        "s3://s3cr3t-in-url@bucket/x",
        "s3://bucket/x?X-Amz-Signature=s3cr3t-in-url",
    ],
)
def test_a_url_with_credentials_is_refused_without_showing_them(url, s3_server, tmp_path):
    with pytest.raises(metalab.StoreError, match="carries credentials") as info:
        metalab.run(_tiny(), store=url)
    assert "s3cr3t-in-url" not in str(info.value) and "s3://bucket/x" in str(info.value)
    with pytest.raises(metalab.StoreError, match="carries credentials") as info:
        metalab.load_results(url)
    assert "s3cr3t-in-url" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
