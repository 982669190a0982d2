"""``metalab repair``: verify every file of a store, move damaged ones aside, rebuild.

Repair reads everything a normal read would only sample: every page of every Parquet
file, every journal line, every artifact's sha256.  What fails is moved to
``quarantine/`` (never deleted); runs that lost their record, or an artifact, then
count as not run and ``resume=True`` runs them again.  A damaged or missing manifest
is rebuilt from the sweep files when they all name one experiment.  Run it while no
sweep writes to the store.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import atomic_write_json
from .checksum import FOLDER, read_sealed_json, seal_json
from .layout import SCHEMA_VERSION, Layout
from .reader import DamagedFileWarning, parquet_files, quarantine, read_or_quarantine
from .verify import read_sweep_files, store_totals

if TYPE_CHECKING:
    from .store import Store


@dataclass
class RepairReport:
    """What :func:`repair` checked, moved and rebuilt."""

    store: Path
    files_checked: int = 0
    runs_folded: int = 0
    manifest_rebuilt: bool = False
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
        if self.manifest_rebuilt:
            out.append("manifest.json rebuilt from the sweep files")
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
        report.manifest_rebuilt = _check_manifest(layout, sweeps, report)
        report.runs_folded = store.recover_journals()
        for folder in (layout.records, layout.metrics):
            for f in parquet_files(folder):
                report.files_checked += 1
                read_or_quarantine(layout, f)  # every page verified, the data dropped
        report.files_checked += _check_artifacts(store)
        store.clean_temp_files()
        totals = store_totals(layout)
    report.messages += [str(w.message) for w in caught if w.category is DamagedFileWarning]
    if totals is not None:
        from .ledger import shortfall

        report.messages += shortfall(read_sweep_files(layout), totals)
    return report


def _check_manifest(layout: Layout, sweeps: list[dict[str, Any]], report: RepairReport) -> bool:
    """Quarantine a damaged manifest; rebuild a missing one from the sweeps. True if rebuilt."""
    try:
        obj, reason = read_sealed_json(layout.manifest)
    except FileNotFoundError:
        obj, reason = None, None
    if obj is not None:
        return False
    if reason is not None:
        quarantine(layout, layout.manifest, reason, consequence="it is rebuilt below")
    names = sorted({str(s["experiment"]) for s in sweeps if s.get("experiment")})
    if len(names) != 1:
        report.messages.append(
            "manifest.json not rebuilt: "
            + (
                f"the sweep files name {len(names)} experiments {names}"
                if names
                else "no sweep files"
            )
            + "; the next metalab.run writes a new one"
        )
        return False
    last = sweeps[-1]
    manifest = {
        "metalab_store": SCHEMA_VERSION,
        "created": sweeps[0].get("started", time.time()),
        "experiment": names[0],
        "experiment_version": last.get("experiment_version"),
        "operation": last.get("operation"),
        "operation_version": last.get("operation_version"),
        "repaired": time.time(),
    }
    atomic_write_json(layout.manifest, seal_json(manifest))
    return True


def _check_artifacts(store: Store) -> int:
    """Verify the sha256 of every artifact of the current records; quarantine mismatches."""
    from ..capture import _sha256_file

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
            elif path.is_file() and _sha256_file(path) != entry.get("sha256"):
                quarantine(store.layout, path, f"sha256 differs from the record of run {run_id}")
    return checked


def _inside(root: Path, path: Path) -> bool:
    real_root = os.path.realpath(root)
    return os.path.realpath(path).startswith(os.path.join(real_root, "artifacts", ""))
