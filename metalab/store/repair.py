"""``metalab repair``: verify every file of a store and move damaged ones aside.

Repair reads everything a normal read would only sample: every page of every Parquet
file, every journal line, every artifact's sha256.  What fails is moved to
``quarantine/`` (never deleted); runs that lost their record, an artifact or their
stepped metrics then count as not run, and ``resume=True`` runs them again.  A damaged
manifest is moved aside too: the next ``metalab.run`` writes a complete new one.
Journals of dead processes are folded into Parquet.  Run it while no sweep writes to
the store.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checksum import FOLDER, read_sealed_json
from .layout import Layout
from .paths import quarantine
from .reader import DamagedFileWarning, parquet_files, read_or_quarantine
from .verify import read_sweep_files, store_totals

if TYPE_CHECKING:
    from .store import Store


@dataclass
class RepairReport:
    """What :func:`repair` checked, moved and rebuilt."""

    store: Path
    files_checked: int = 0
    runs_folded: int = 0
    runs_to_redo: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def moved(self) -> int:
        """Files (or folders) moved to ``quarantine/``."""
        return sum(1 for m in self.messages if "was moved to" in m)

    def lines(self) -> list[str]:
        """A human-readable summary, one line each."""
        out = [f"store {self.store}: {self.files_checked} files verified"]
        if self.runs_folded:
            out.append(f"{self.runs_folded} runs folded from journals of dead processes")
        if self.runs_to_redo:
            out.append(
                f"{self.runs_to_redo} runs lost their stepped metrics: recorded as failed "
                f"({STEPS_LOST}), so the next run with resume=True redoes them"
            )
        out += self.messages
        out.append(
            f"{self.moved} damaged file(s) moved to quarantine/"
            + (
                "; run the experiment again with resume=True to redo their runs"
                if self.moved
                else ""
            )
        )
        return out


def repair(store: Store) -> RepairReport:
    """Verify every file of ``store``; quarantine what is damaged; rebuild the manifest."""
    report = RepairReport(store.root)
    layout = store.layout
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DamagedFileWarning)
        sweeps = read_sweep_files(layout)
        report.files_checked += len(sweeps) + 1
        _check_manifest(layout, sweeps, report)
        report.runs_folded = store.recover_journals()
        for folder in (layout.records, layout.metrics):
            for f in parquet_files(folder):
                report.files_checked += 1
                read_or_quarantine(layout, f)  # every page verified, the data dropped
        report.files_checked += _check_artifacts(store)
        report.runs_to_redo = _redo_runs_that_lost_points(store)
        store.clean_temp_files()
        totals = store_totals(layout)
    report.messages += [str(w.message) for w in caught if w.category is DamagedFileWarning]
    if totals is not None:
        from .ledger import shortfall

        report.messages += shortfall(read_sweep_files(layout), totals)
    store.sync()  # a remote store: the moves and the rebuilt manifest go to the bucket
    return report


def _check_manifest(layout: Layout, sweeps: list[dict[str, Any]], report: RepairReport) -> None:
    """Quarantine a damaged manifest; the next ``metalab.run`` writes a complete new one."""
    try:
        obj, reason = read_sealed_json(layout.manifest)
    except FileNotFoundError:
        return
    if obj is not None:
        return
    names = sorted({str(s["experiment"]) for s in sweeps if s.get("experiment")})
    owner = f" (its sweep files name the experiment {', '.join(names)})" if names else ""
    quarantine(
        layout,
        layout.manifest,
        reason or "damaged",
        consequence=f"the next metalab.run of this store's experiment{owner} writes a new one",
    )


def _check_artifacts(store: Store) -> int:
    """Verify the sha256 of every artifact of the current records; quarantine mismatches."""
    from .checksum import sha256_file

    table = store.records(columns=["run_id", "artifacts"])
    if "artifacts" not in table.column_names:
        return 0
    checked = 0
    for run_id, raw in zip(
        table.column("run_id").to_pylist(), table.column("artifacts").to_pylist(), strict=True
    ):
        for entry in json.loads(raw) if raw else []:
            path = store.root / str(entry.get("path", ""))
            if not _inside(store.root, path):
                continue  # never follow a path that leaves the store
            checked += 1
            if os.path.isdir(path):
                quarantine(store.layout, path, FOLDER)
            elif path.is_file() and sha256_file(path) != entry.get("sha256"):
                quarantine(store.layout, path, f"sha256 differs from the record of run {run_id}")
    return checked


def _inside(root: Path, path: Path) -> bool:
    real_root = os.path.realpath(root)
    return os.path.realpath(path).startswith(os.path.join(real_root, "artifacts", ""))


#: Error type of the record repair writes for a run whose stepped metrics were lost.
STEPS_LOST = "StepsLost"


def _redo_runs_that_lost_points(store: Store) -> int:
    """Record as failed the runs of sweeps short of stepped-metric points; returns how many.

    The ledgers tell which sweeps lost points; of their runs, those whose current record
    comes from that sweep and that have no point left get a new record (one attempt
    later, status ``failed``, error type ``StepsLost``), so ``resume=True`` redoes them.
    A run that never recorded a step cannot be told apart, and is redone too.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from .ledger import file_ledgers
    from .reader import read_steps
    from .verify import footer_kvs

    layout = store.layout
    expected = file_ledgers(footer_kvs(layout, layout.records)) or {}
    present = file_ledgers(footer_kvs(layout, layout.metrics)) or {}
    short = [s for s, (_, n) in expected.items() if present.get(s, [0, 0])[1] < n]
    if not short:
        return 0
    current = store.records()
    current = current.filter(pc.is_in(current.column("sweep"), value_set=pa.array(short)))
    steps = read_steps(layout).select(["run_id", "sweep"])
    have = {
        f"{r}\t{s}"
        for r, s in zip(*(steps.column(c).to_pylist() for c in ("run_id", "sweep")), strict=True)
    }
    keys = pc.binary_join_element_wise(current.column("run_id"), current.column("sweep"), "\t")
    lost = current.filter(pc.invert(pc.is_in(keys, value_set=pa.array(sorted(have), pa.string()))))
    if lost.num_rows:
        _write_failed(store, lost)
    return int(lost.num_rows)


def _write_failed(store: Store, lost: Any) -> None:
    """Append one ``failed`` record (a later attempt) for each row of ``lost``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from .files import write_partition
    from .records import METRIC_PREFIX, now_us

    n = lost.num_rows
    now = pa.array([now_us()] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    sweep = f"repair-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    message = (
        "its stepped metrics were lost (a metrics file was deleted or damaged); "
        "metalab repair marked it to be run again"
    )
    new = {
        "status": pa.array(["failed"] * n),
        "attempt": pc.add(lost.column("attempt").fill_null(0), 1).cast(pa.int32()),
        "started_at": now,
        "ended_at": now,
        "duration_s": pa.array([0.0] * n),
        "error_type": pa.array([STEPS_LOST] * n),
        "error_message": pa.array([message] * n),
        "traceback": pa.nulls(n, pa.string()),
        "sweep": pa.array([sweep] * n),
    }
    table = lost.replace_schema_metadata(None)
    for name in table.column_names:
        col = new.get(name)
        if col is None and name.startswith(METRIC_PREFIX):
            col = pa.nulls(n, table.schema.field(name).type)
        if col is not None:
            i = table.schema.get_field_index(name)
            table = table.set_column(i, name, col.cast(table.schema.field(name).type))
    write_partition(store.layout, sweep, table, None)
