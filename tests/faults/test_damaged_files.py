"""Every kind of store file, truncated, zeroed, bit-flipped, replaced by a folder or deleted.

Each case reads the damaged store the way a user does (``_probe.read_all``: table with
every column, stepped metrics, artifacts, sweeps, manifest) and then resumes the
experiment.  What must hold:

* the read never crashes: the only exception allowed is a ``StoreError``, which names
  the file and what to do (``metalab repair`` or a resume);
* a value that differs from what was written comes with a ``DamagedFileWarning`` or that
  ``StoreError``; the documented exceptions lose data without a wrong value (see
  ``UNFLAGGED``);
* the resume (following ``metalab repair`` when told to) gives back all the data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _probe import (
    complete_store,
    differences,
    experiment,
    fresh_copy,
    journal_store,
    read_all,
    resume,
)

from metalab.store.atomic import atomic_write_text
from metalab.sweep.partition import done_marker
from metalab.sweep.shipping import ship

KINDS = ["records", "metrics", "journal", "manifest", "sweep", "artifact", "payload", "marker"]
DAMAGES = ["truncated", "zeroed", "flipped", "folder", "deleted"]
#: Cases that lose data without a warning, never returning a wrong value (documented in
#: docs/reliability.md): a journal cut short reads as a process that died at that point;
#: sweep files and the manifest describe the store and are not data.
UNFLAGGED = {("journal", "truncated"), ("journal", "deleted"), ("sweep", "deleted")}
UNFLAGGED |= {("manifest", "deleted")}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    base = tmp_path_factory.mktemp("pristine")
    out = {}
    for name, build in (("complete", complete_store), ("journal", journal_store)):
        root = build(base / name)
        if name == "complete":
            _leftovers(root)
        ref = read_all(root, steps=True)
        assert not ref.flagged, ref.messages
        done = fresh_copy(root, base / f"{name}-resumed")
        resume(done)
        out[name] = (root, ref, read_all(done, steps=True))
    return out


def _leftovers(root: Path) -> None:
    """What a killed cluster driver leaves: a payload and a done marker, an hour old."""
    from metalab.store import Layout

    layout = Layout(root)
    exp = experiment()
    payload = layout.sweeps / "20260101T000000-deadbeef.payload"
    ship(payload, exp.operation, exp.context)
    marker = done_marker(layout, "20260101T000000-deadbeef", 0)
    atomic_write_text(marker, json.dumps({"success": 4, "failed": 0, "skipped": 0}))
    old = time.time() - 7200
    for p in (payload, marker):
        os.utime(p, (old, old))


def _target(kind: str, root: Path) -> Path:
    if kind in ("records", "metrics"):
        return sorted((root / kind).glob("*.parquet"))[1]
    if kind == "journal":
        return next((root / "journal").glob("*.jsonl"))
    if kind == "manifest":
        return root / "manifest.json"
    if kind == "sweep":
        return next((root / "sweeps").glob("*.json"))
    if kind == "artifact":
        return sorted((root / "artifacts").glob("*/blob.json"))[5]
    if kind == "payload":
        return next((root / "sweeps").glob("*.payload"))
    return next((root / "journal").glob("*.done"))


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    stat = path.stat()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zeroed":
        path.write_bytes(bytes(len(data)))
    elif how == "flipped":
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x04
        path.write_bytes(bytes(flipped))
    elif how == "folder":
        path.unlink()
        path.mkdir()
        (path / "x").write_text("x")
    else:
        path.unlink()
    if path.exists():  # keep the age: leftovers are cleaned only when an hour old
        os.utime(path, (stat.st_atime, stat.st_mtime))


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_damaged_file_is_reported_or_harmless_and_resume_restores(pristine, tmp_path, kind, how):
    root, ref, after = pristine["journal" if kind == "journal" else "complete"]
    work = fresh_copy(root, tmp_path / "s")
    path = _target(kind, work)
    damage(path, how)

    got = read_all(work, steps=True)
    diffs = differences(ref, got)
    for m in got.messages:
        if m.startswith("StoreError"):  # one clear error: the file, and what to do
            assert path.name in m, m
            assert "metalab repair" in m or "resume=True" in m, m
    if (kind, how) in UNFLAGGED:  # less, never different
        assert all(got.rows[r] == ref.rows[r] for r in got.rows), diffs
        assert got.points is not None and got.points <= (ref.points or set()), diffs
        assert all(got.artifacts[r] == ref.artifacts[r] for r in got.artifacts), diffs
        assert all(s in ref.sweeps for s in got.sweeps) and got.manifest in ({}, ref.manifest)
    elif diffs:
        assert got.flagged, f"silent: {diffs}"

    said = resume(work, advice=got.messages)
    again = read_all(work, steps=True)
    assert again.core() == after.core(), (said, again.messages)
    assert not again.flagged, again.messages


def test_metalab_repair_command_reports_and_unblocks_run(pristine, tmp_path):
    """A damaged manifest blocks run() with a StoreError naming `metalab repair`; the
    command moves it aside, and run() then works and writes a new manifest."""
    import metalab
    from metalab.errors import StoreError

    root, _, after = pristine["complete"]
    work = fresh_copy(root, tmp_path / "s")
    damage(work / "manifest.json", "flipped")
    damage(sorted((work / "records").glob("*.parquet"))[0], "flipped")
    with pytest.raises(StoreError, match="metalab repair"):
        metalab.run(experiment(), store=work)
    proc = subprocess.run(
        [sys.executable, "-m", "metalab", "repair", str(work)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "manifest.json" in proc.stdout and "moved to" in proc.stdout
    assert "2 damaged file(s) moved to quarantine/" in proc.stdout, proc.stdout
    metalab.run(experiment(), store=work)
    assert json.loads((work / "manifest.json").read_text())["experiment"] == "probe"
    again = read_all(work, steps=True)
    assert again.core() == after.core() and not again.flagged, again.messages
