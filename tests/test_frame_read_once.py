"""``Results.frame`` reads a store once when its files prove that no run id appears twice,
and still drops superseded records (or refuses a lying file) when they do not."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

import metalab
from metalab.store import records
from metalab.store.store import Store

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/io").exists(), reason="counts bytes with Linux /proc/self/io"
)


@metalab.operation(name="flaky", version="1")
def flaky(params, context, capture):
    """Fails the runs with odd x the first time (a marker file remembers), then succeeds."""
    marker = Path(context["dir"]) / f"seen-{params['x']}"
    capture.metric("y", params["x"] * 2.0)
    if params["x"] % 2 and not marker.exists():
        marker.write_text("")
        raise ValueError("first attempt fails")


def _exp(tmp_path: Path, n: int) -> metalab.Experiment:
    return metalab.Experiment(
        name="flaky",
        version="1",
        context={"dir": str(tmp_path)},
        operation=flaky,
        params=metalab.grid(x=list(range(n))),
    )


def _rchar() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar")


def _frame_bytes(store: Path, **equals) -> tuple[int, object]:
    res = metalab.load_results(store)
    if equals:
        res = res.filter(**equals)
    before = _rchar()
    df = res.frame.compute(scheduler="sync")
    return _rchar() - before, df


def _store_bytes(store: Path) -> int:
    return sum(f.stat().st_size for f in (store / "records").glob("*.parquet"))


def _flags(store: Path) -> list[bytes | None]:
    out = []
    for f in sorted((store / "records").glob("*.parquet")):
        out.append((pq.ParquetFile(f).metadata.metadata or {}).get(records.DISTINCT_KEY))
    return out


def test_a_compacted_store_is_read_once(tmp_path):
    store = tmp_path / "s"
    exp = metalab.Experiment(
        name="wide",
        version="1",
        context={},
        operation=flaky,
        params=metalab.grid(x=list(range(0, 40_000, 2))),  # even x: no failure
    )
    metalab.run(exp, store=store, partition_size=5000)
    assert len(_flags(store)) == 4
    _frame_bytes(store)  # warm up imports
    many, df = _frame_bytes(store)
    assert len(df) == 20_000
    Store.open(store).compact(at_files=2)
    assert _flags(store) == [b"1"]
    size = _store_bytes(store)
    fixed, none = _frame_bytes(store, x=-1)  # footers, manifest, sweep files
    once, df = _frame_bytes(store)
    assert len(none) == 0 and len(df) == 20_000 and df["run_id"].is_unique
    assert once - fixed < 1.2 * size, (once, fixed, size)  # one pass over the data
    assert once < many * 0.75, (once, many)  # the run ids are no longer read twice


def test_duplicates_across_files_are_dropped_before_and_after_compaction(tmp_path):
    store = tmp_path / "s"
    metalab.run(_exp(tmp_path, 40), store=store, partition_size=10)
    metalab.run(_exp(tmp_path, 40), store=store, partition_size=10)  # re-runs the failures
    assert set(_flags(store)) == {b"1"}  # every file alone is distinct; not the store
    for _ in range(2):
        _, df = _frame_bytes(store)
        assert len(df) == 40 and df["run_id"].is_unique
        assert (df["status"] == "success").all()  # the later attempt wins
        assert sorted(df["y"]) == [2.0 * x for x in range(40)]
        Store.open(store).compact(at_files=2)
    assert _flags(store) == [b"0"]  # both attempts kept in one file, which says so


def test_a_file_that_lies_about_its_run_ids_is_refused(tmp_path, monkeypatch):
    store = tmp_path / "s"
    metalab.run(_exp(tmp_path, 10), store=store)
    metalab.run(_exp(tmp_path, 10), store=store)
    monkeypatch.setattr(records, "distinct_flag", lambda table: {records.DISTINCT_KEY: b"1"})
    Store.open(store).compact(at_files=2)  # one file with both attempts, flagged distinct
    assert _flags(store) == [b"1"]
    with pytest.raises(metalab.StoreError, match="says its run ids are distinct"):
        _frame_bytes(store)


def test_a_damaged_file_in_a_read_once_store_is_quarantined(tmp_path):
    store = tmp_path / "s"
    exp = metalab.Experiment(
        name="even",
        version="1",
        context={"dir": str(tmp_path)},
        operation=flaky,
        params=metalab.grid(x=list(range(0, 400, 2))),  # even x: no failure
    )
    metalab.run(exp, store=store, partition_size=50)
    Store.open(store).compact(at_files=2)
    (damaged,) = (store / "records").glob("*.parquet")
    assert _flags(store) == [b"1"]
    raw = bytearray(damaged.read_bytes())
    raw[100] ^= 0xFF  # the first data page, not the footer
    damaged.write_bytes(bytes(raw))
    with (
        pytest.warns(metalab.DamagedFileWarning),
        pytest.raises(metalab.StoreError, match="damaged"),
    ):
        _frame_bytes(store)
    assert list((store / "quarantine").glob("*.parquet"))
    _, df = _frame_bytes(store)
    assert len(df) == 0  # its runs count as not run
