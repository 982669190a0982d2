"""Two driver processes on one store at the same time."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from _faults import counts, finish, records, start_driver


def _check_store(store) -> None:
    assert not (store / "quarantine").exists()  # no torn file was ever seen
    assert not list(store.rglob(".tmp-*"))
    assert not list((store / "journal").glob("*.jsonl"))
    for folder in ("records", "metrics"):
        for f in (store / folder).glob("*.parquet"):
            pq.read_table(f)  # every file is whole


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(3))
def test_two_drivers_creating_and_filling_one_store(tmp_path, round_):
    store, go = tmp_path / "new-store", tmp_path / "go"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    ranges = [("0", "150"), ("75", "225")]
    procs = [
        start_driver(
            store,
            log,
            "--start",
            a,
            "--stop",
            b,
            "--partition-size",
            "10",
            "--sleep",
            "0.002",
            "--go",
            str(go),
        )
        for log, (a, b) in zip(logs, ranges, strict=True)
    ]
    for p in procs:  # both are up and waiting at the barrier
        assert p.stdout is not None and p.stdout.readline() == "driver: ready\n"
    go.touch()
    for p in procs:
        rc, _out, err = finish(p)
        assert rc == 0, err
    recs = records(store)
    assert sorted(r["x"] for r in recs) == list(range(225))  # one current record per run id
    assert len({r["run_id"] for r in recs}) == 225
    assert {r["status"] for r in recs} == {"success"}
    _check_store(store)
    # Every run was executed by at least one driver; only the overlap can run twice.
    both = counts(logs[0]) + counts(logs[1])
    assert set(both) == set(range(225))
    assert {x for x, n in both.items() if n > 1} <= set(range(75, 150))

    # A third driver resumes the union and executes nothing.
    log = tmp_path / "c.log"
    rc, _out, err = finish(start_driver(store, log, "--start", "0", "--stop", "225"))
    assert rc == 0, err
    assert not log.exists()
    _check_store(store)
