"""Documented store and sweep rules, each checked through what a user can observe.

Every test here was written by breaking its rule on purpose in the source and seeing no
other test fail (docs/design.md, "Durability and the store"; docs/reliability.md).
"""

from __future__ import annotations

import errno
import json
import os
import time
import warnings
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import metalab
from metalab.seeds import SeedBundle
from metalab.store import Store

HOUR_US = 3_600_000_000


def _parquet(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".parquet")


def _log(path: Path, x: int) -> None:
    with open(path, "a") as f:  # one small O_APPEND write: safe across processes
        f.write(f"{x}\n")


def _executions(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


# -- journal flush: "a killed process loses at most 3 finished runs" ------------------------
def test_a_journal_leaves_at_most_3_finished_runs_unwritten(tmp_path):
    """Lines are flushed every 4 runs, so a reader (or a process killed now) misses <= 3.

    The reader looks from inside the sweep, while runs are being appended; what it sees
    is what a SIGKILL at that moment would leave on disk.
    """
    store = tmp_path / "s"
    seen: dict[int, int] = {}

    @metalab.operation(name="observe")
    def observe(params, capture):
        x = params["x"]
        if x % 5 == 4:  # runs 0..x-1 have finished
            seen[x] = len(metalab.load_results(store))
        capture.metric("y", x)

    exp = metalab.Experiment("observe", observe, params=metalab.grid(x=list(range(60))))
    metalab.run(exp, store=store)  # one partition: every record comes from the journal
    assert len(seen) == 12
    for x, n in seen.items():
        assert x - 3 <= n <= x, (x, n)


# -- compaction -------------------------------------------------------------------------
@metalab.operation(name="one_file_each", version="1")
def one_file_each(params, capture):
    capture.metric("y", params["x"])
    capture.metric("curve", 1.0, step=0)


def _files_exp(n: int) -> metalab.Experiment:
    return metalab.Experiment("files", one_file_each, params=metalab.grid(x=list(range(n))))


def test_compaction_merges_a_folder_once_it_holds_16_files(tmp_path):
    store = tmp_path / "s"
    metalab.run(_files_exp(15), store=store, partition_size=1)  # one file per partition
    assert len(_parquet(store / "records")) == 15  # below the threshold: left alone
    assert len(_parquet(store / "metrics")) == 15
    res = metalab.run(_files_exp(16), store=store, partition_size=1)  # the 16th file
    assert len(_parquet(store / "records")) == 1
    assert len(_parquet(store / "metrics")) == 1
    assert len(res) == 16 and sorted(r.params["x"] for r in res) == list(range(16))
    assert len(res.metric_frame().compute()) == 16


def test_compaction_writes_the_merged_file_before_deleting_its_inputs(tmp_path, tmpfs, fill_disk):
    """A compaction that cannot write its merged file (disk full) loses no record."""
    store = tmpfs("size=8m") / "s"
    metalab.run(_files_exp(15), store=store, partition_size=1)
    fill_disk(store.parent)
    with pytest.raises(OSError) as info:
        Store.open(store).compact(at_files=2)
    assert info.value.errno == errno.ENOSPC
    assert len(_parquet(store / "records")) == 15
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is reported damaged
        res = metalab.load_results(store)
        assert sorted(r.params["x"] for r in res) == list(range(15))


# -- temp files -------------------------------------------------------------------------
def _as_failed_later(table: pa.Table) -> pa.Table:
    """The same records, failed and ending an hour later (they would win deduplication)."""
    status = table.schema.get_field_index("status")
    table = table.set_column(
        status, "status", pa.array(["failed"] * table.num_rows, table.schema.field("status").type)
    )
    ended = table.schema.get_field_index("ended_at")
    later = pc.add(table.column("ended_at").cast(pa.int64()), HOUR_US)
    return table.set_column(ended, "ended_at", later.cast(table.schema.field("ended_at").type))


def test_readers_ignore_temp_files_and_cleanup_removes_old_ones(tmp_path):
    """Files named ``.tmp-*`` are writes in progress: never read, deleted after an hour."""
    store, copy, log = tmp_path / "s", tmp_path / "journal-copy", tmp_path / "exec.log"

    @metalab.operation(name="copies_its_journal")
    def op(params, capture):
        _log(log, params["x"])
        if params["x"] == 6:  # runs 0-3 are flushed: keep a copy of the live journal
            (live,) = (store / "journal").glob("*.jsonl")
            copy.write_bytes(live.read_bytes())
        capture.metric("y", params["x"])

    exp = metalab.Experiment("tmp", op, params=metalab.grid(x=list(range(8))))
    metalab.run(exp, store=store)
    # Temp files that would change what readers see if they were read: every record
    # failed and newer, and a newer sweep with 999 runs to do.
    tag = ".tmp-0123456789ab-"
    (records,) = _parquet(store / "records")
    pq.write_table(_as_failed_later(pq.read_table(records)), store / "records" / f"{tag}r.parquet")
    header, *lines = copy.read_text().splitlines()
    assert len(lines) >= 4
    failed = []
    for line in lines:  # journal format 3: each line ends with a tab and its CRC-32
        run_id, _status, t0, t1, rest = line.rsplit("\t", 1)[0].split("\t", 4)
        body = "\t".join([run_id, "failed", t0, str(int(t1) + HOUR_US), rest])
        failed.append(f"{body}\t{zlib.crc32(body.encode()):08x}")
    sweep_name = json.loads(header.rsplit("\t", 1)[0])["sweep"]
    journal = store / "journal" / f"{tag}{sweep_name}-000000-x.jsonl"
    journal.write_text("\n".join([header, *failed]) + "\n")
    (sweep,) = metalab.load_results(store).provenance
    later = dict(sweep, sweep="later", started=sweep["started"] + 3600, to_run=999)
    (store / "sweeps" / f"{tag}later.json").write_text(json.dumps(later))
    temps = [store / "records" / f"{tag}r.parquet", journal, store / "sweeps" / f"{tag}later.json"]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and nothing is reported damaged
        res = metalab.load_results(store)
        assert res.counts() == {"success": 8, "failed": 0, "pending": 0}
        assert [s["sweep"] for s in res.provenance] == [sweep["sweep"]]
    metalab.run(exp, store=store)  # resume: nothing to do, fresh temp files are kept
    assert sorted(_executions(log)) == list(range(8))
    assert all(p.exists() for p in temps)
    two_hours_ago = time.time() - 7200
    for p in temps:
        os.utime(p, (two_hours_ago, two_hours_ago))
    metalab.run(exp, store=store)
    assert not any(p.exists() for p in temps)  # a killed writer's leftovers are cleaned
    assert sorted(_executions(log)) == list(range(8))


# -- common random numbers ----------------------------------------------------------------
@metalab.operation(name="draws", version="1")
def draws(params, seeds, capture):
    capture.metric("u", float(seeds.numpy().random()))


@pytest.mark.parametrize(
    "options",
    [{}, {"timeout": 60.0}, {"executor": metalab.ThreadExecutor(2)}],
    ids=["in-process", "timeout-child", "threads"],
)
def test_common_random_numbers_across_configurations(tmp_path, options):
    """Runs with the same replicate draw the same numbers in every configuration."""
    exp = metalab.Experiment(
        "crn",
        draws,
        params=metalab.grid(k=[1, 2, 3]),
        seeds=metalab.seeds(base=7, replicates=2),
    )
    res = metalab.run(exp, store=tmp_path / "s", partition_size=2, **options)
    assert len(res) == 6
    for run in res:
        assert run.metrics["u"] == SeedBundle(7, (run.replicate,)).numpy().random()
    df = res.to_pandas()
    assert df.groupby("replicate")["u"].nunique().eq(1).all()
    assert df["u"].nunique() == 2


# -- done markers -------------------------------------------------------------------------
class KillWhenAPartitionFinishes:
    """A worker plugin: the first time a task finishes after a metalab partition left its
    done marker, the worker dies before telling the scheduler, so Dask runs that task
    again although all its runs are recorded."""

    def __init__(self, journal: str, flag: str) -> None:
        self.journal = journal
        self.flag = flag

    def transition(self, key: object, start: str, finish: str, **kwargs: object) -> None:
        if start != "executing" or finish != "memory" or os.path.exists(self.flag):
            return
        if any(n.endswith(".done") for n in os.listdir(self.journal)):
            open(self.flag, "x").close()
            os._exit(1)


@metalab.operation(name="counted", version="1")
def counted(params, context):
    _log(Path(context["log"]), params["x"])
    return {"y": params["x"]}


@pytest.mark.cluster
def test_a_recomputed_finished_partition_does_not_run_again(tmp_path):
    from distributed import Client, LocalCluster, WorkerPlugin

    class Plugin(KillWhenAPartitionFinishes, WorkerPlugin):
        pass

    store, log, flag = tmp_path / "s", tmp_path / "exec.log", tmp_path / "killed"
    exp = metalab.Experiment(
        "markers", counted, context={"log": str(log)}, params=metalab.grid(x=list(range(8)))
    )
    Store.open(store, create=True)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(Plugin(str(store / "journal"), str(flag)))
        res = metalab.run(exp, executor=metalab.DaskExecutor(client), store=store, partition_size=4)
    assert flag.exists()  # a worker died holding a finished partition's result
    assert sorted(_executions(log)) == list(range(8))  # yet no run ran twice
    assert res.counts() == {"success": 8, "failed": 0, "pending": 0}
    assert res.provenance[-1]["success"] == 8
    assert not [p for p in (store / "journal").iterdir() if p.suffix == ".done"]
