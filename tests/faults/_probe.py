"""Stores holding every kind of file, read back whole and compared with what was written.

Used by the damaged-file, bit-flip and clock-skew tests.  A store is read the way a user
reads it (``load_results``: the table with every column, the stepped metrics through
``metric_frame``, every artifact, the manifest and the sweeps); the read is *flagged*
when it raised a :class:`~metalab.store.DamagedFileWarning` or a
:class:`~metalab.errors.StoreError`.  Any other exception propagates: that is a crash.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import metalab
from metalab.errors import StoreError
from metalab.store import DamagedFileWarning, Store

HERE = Path(__file__).parent
N = 12
#: In the journal store, the driver SIGKILLs itself when it reaches this run.
KILL_AT = 8


@metalab.operation(name="probe", version="1")
def probe_op(params, capture):
    x = params["x"]
    if os.environ.get("METALAB_PROBE_KILL_AT") == str(x):
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("METALAB_PROBE_SLOW"):
        time.sleep(0.025)  # slower than 20 ms: the journal flushes after every run
    capture.metric("y", x * 1.5)
    for step in range(3):
        capture.metric("curve", x + step / 4, step=step)
    capture.artifact("blob", {"x": x, "pad": "ab" * 20})


def experiment() -> metalab.Experiment:
    return metalab.Experiment(
        name="probe", operation=probe_op, params=metalab.grid(x=list(range(N)))
    )


def complete_store(root: Path) -> Path:
    """A finished store: 3 records files, 3 metrics files, 12 artifacts, sweep, manifest."""
    metalab.run(experiment(), store=root, partition_size=4)
    return root


def journal_store(root: Path) -> Path:
    """A store whose only sweep was SIGKILLed at run KILL_AT: its runs are in a journal."""
    env = {
        **os.environ,
        "METALAB_PROBE_KILL_AT": str(KILL_AT),
        "METALAB_PROBE_SLOW": "1",
        "PYTHONPATH": str(HERE),
    }
    code = f"import _probe, metalab; metalab.run(_probe.experiment(), store={str(root)!r})"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(list((root / "journal").glob("*.jsonl"))) == 1
    return root


def _norm(v: Any) -> Any:
    if v is None or v is getattr(__import__("pandas"), "NA", None):
        return None
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


@dataclass
class Snapshot:
    """Everything a user can read from a store, and whether the read was flagged."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    points: set[tuple[Any, ...]] | None = None
    artifacts: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None
    sweeps: list[dict[str, Any]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return bool(self.messages)

    def core(self) -> tuple[Any, ...]:
        """What a re-run reproduces exactly: status and metric per run, points, artifacts."""
        runs = {r: (row["status"], row.get("y")) for r, row in self.rows.items()}
        return runs, self.points, self.artifacts


def _read(root: Path, snap: Snapshot, caught: list[Any], steps: bool) -> None:
    res = metalab.load_results(root)
    df = res.to_pandas(full=True)
    snap.rows = {
        r["run_id"]: {k: _norm(v) for k, v in r.items()} for r in df.to_dict(orient="records")
    }
    for run in res:
        try:
            snap.artifacts[run.run_id] = run.artifact("blob")
        except StoreError as exc:  # ArtifactIntegrityError too
            snap.messages.append(f"StoreError: {exc}")
    snap.sweeps = [{k: v for k, v in s.items() if k != "provenance"} for s in res.provenance]
    snap.manifest = Store.open(root).read_manifest()
    if steps or not (snap.messages or _damage(caught)):
        # Once a read is flagged any difference counts as detected, so the (slow) lazy
        # frame of stepped metrics is only computed for reads that are not flagged yet.
        frame = res.metric_frame().compute(scheduler="sync")
        snap.points = {
            (r.run_id, r.name, int(r.step), float(r.value)) for r in frame.itertuples(index=False)
        }


def _damage(caught: list[Any]) -> list[str]:
    return [f"warning: {w.message}" for w in caught if issubclass(w.category, DamagedFileWarning)]


def read_all(root: Path, *, steps: bool = False) -> Snapshot:
    """Read everything (stepped metrics only if nothing is flagged before, or ``steps``).

    Warnings and StoreErrors are collected; other exceptions propagate.
    """
    snap = Snapshot()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _read(root, snap, caught, steps)
        except StoreError as exc:
            snap.messages.append(f"StoreError: {exc}")
    snap.messages += _damage(caught)
    return snap


def differences(ref: Snapshot, got: Snapshot) -> list[str]:
    """Every value of ``ref`` that ``got`` lacks or returns differently (a few, as text)."""
    out = []
    for run_id, row in ref.rows.items():
        other = got.rows.get(run_id)
        if other != row:
            out.append(f"run {run_id[:8]}: {'missing' if other is None else 'differs'}")
    out += [f"extra run {r[:8]}" for r in got.rows.keys() - ref.rows.keys()]
    if got.points is not None and got.points != ref.points:
        out.append(f"{len(got.points ^ (ref.points or set()))} stepped points differ")
    for run_id, obj in ref.artifacts.items():
        if run_id in got.rows and got.artifacts.get(run_id) != obj:
            out.append(f"artifact of {run_id[:8]} differs")
    if got.manifest is not None and got.manifest != ref.manifest:
        out.append("manifest differs")
    if got.sweeps != ref.sweeps:
        out.append("sweeps differ")
    return out


def resume(root: Path, advice: Sequence[str] = ()) -> list[str]:
    """Run the experiment again with resume=True, following the advice to run
    ``metalab repair`` of ``advice`` (what a read said), a StoreError or a warning.
    Returns what was said."""
    from metalab.store.repair import repair

    said = []
    if any("metalab repair" in m for m in advice):
        said += repair(Store.open(root)).lines()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            metalab.run(experiment(), store=root)
        except StoreError as exc:
            said.append(str(exc))
            assert "metalab repair" in str(exc), exc
            said += repair(Store.open(root)).lines()
            metalab.run(experiment(), store=root)
        if any("metalab repair" in str(w.message) for w in caught):
            said += repair(Store.open(root)).lines()
            metalab.run(experiment(), store=root)
    said += [str(w.message) for w in caught if issubclass(w.category, DamagedFileWarning)]
    return said


def fresh_copy(src: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, symlinks=True)
    return dest
