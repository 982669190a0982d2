"""A crafted store touches nothing outside itself, whatever it contains (issue 11, item 1).

Each case copies a healthy store and plants one hostile entry: a path that leaves the store
(absolute, ``../``), a link (a store folder, a run folder, a file), a hard link to an
outside file, a FIFO, a very long name, a NUL or a newline in a name. Then every entry point
that reads or repairs a store runs on it: ``load_results`` and ``table()``,
``Run.artifact_path`` and ``Run.artifact``, a resume ``run()``, a ``run(resume=False)`` that
writes every artifact again, and the ``metalab show`` and ``metalab table`` commands.

A sandbox folder beside the store (secrets, a folder the links point to, a valid records
file) is hashed before and after every entry point: listing, contents, mtimes, modes. It
must never change, and no entry point may fail with anything but a clear ``StoreError``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import metalab
from metalab import cli
from metalab.errors import ResultsError, StoreError
from metalab.store import DamagedFileWarning
from metalab.store.files import write_parquet
from metalab.store.journal import HOST

N_RUNS = 4


@metalab.operation(name="crafted", version="1")
def _op(params, capture):
    capture.metric("y", params["x"] * 2)
    capture.artifact("blob", {"x": params["x"]})


def _exp(xs: range = range(N_RUNS)) -> metalab.Experiment:
    return metalab.Experiment(name="crafted", operation=_op, params=metalab.grid(x=list(xs)))


# --- the sandbox and its fingerprint -----------------------------------------------------------
def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every entry below ``root`` (links not followed): content digest, mtime, mode."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in ["", *dirnames, *filenames]:
            p = Path(dirpath, name) if name else Path(dirpath)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                digest = "link:" + os.readlink(p)
            else:
                digest = "dir"
            out[str(p.relative_to(root))] = (digest, st.st_mtime_ns, st.st_mode)
    return out


@dataclass
class Ctx:
    """One crafted case: the store, the sandbox beside it, and facts about the store."""

    store: Path
    sandbox: Path
    run_ids: list[str]
    cols: dict[str, list]

    def records_file(self) -> Path:
        return sorted((self.store / "records").glob("*.parquet"))[0]

    def artifact(self, i: int = 0) -> Path:
        return self.store / "artifacts" / self.run_ids[i] / "blob.json"


@pytest.fixture(scope="module")
def healthy(tmp_path_factory) -> tuple[Path, Path]:
    """A healthy store of N_RUNS runs, and a valid records file of other runs (x >= 100)."""
    base = tmp_path_factory.mktemp("healthy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metalab.run(_exp(), store=base / "store")
        metalab.run(_exp(range(100, 100 + N_RUNS)), store=base / "other")
    foreign = sorted((base / "other" / "records").glob("*.parquet"))[0]
    return base / "store", foreign


@pytest.fixture
def ctx(tmp_path, healthy) -> Ctx:
    store_src, foreign = healthy
    store = tmp_path / "store"
    shutil.copytree(store_src, store)
    sandbox = tmp_path / "sandbox"
    (sandbox / "victim").mkdir(parents=True)
    (sandbox / "secret.txt").write_text("top secret\n")
    (sandbox / ".ssh").mkdir()
    (sandbox / ".ssh" / "id_rsa").write_text("-----BEGIN PRIVATE KEY-----\n")
    (sandbox / "victim" / "blob.json").write_text('{"x": "not yours"}')
    shutil.copy(foreign, sandbox / "valid.parquet")
    (sandbox / "outside.json").write_text(json.dumps({"sweep": "outside", "started": 1.0}))
    (sandbox / "manifest.json").write_text((store / "manifest.json").read_text())
    for folder in ("records", "metrics", "journal", "artifacts", "sweeps", "quarantine"):
        dst = sandbox / f"{folder}-copy"
        if (store / folder).exists():
            shutil.copytree(store / folder, dst, symlinks=True)
        else:
            dst.mkdir()
    t = pq.read_table(sorted((store / "records").glob("*.parquet"))[0])
    cols = {k: t.column(k).to_pylist() for k in ("run_id", "params", "replicate", "seed")}
    cols["attempt"] = [1] * t.num_rows
    order = sorted(range(t.num_rows), key=lambda i: json.loads(cols["params"][i])["x"])
    cols = {k: [v[i] for i in order] for k, v in cols.items()}
    old = 1_000_000_000  # 2001: older than any clean-up threshold
    for p in sandbox.rglob("*"):
        os.utime(p, (old, old), follow_symlinks=False)
    return Ctx(store, sandbox, cols["run_id"], cols)


# --- crafting tools (the attacker's side) -------------------------------------------------------
def set_artifact_path(ctx: Ctx, path: str, *, i: int = 0, run_id: str | None = None) -> None:
    """Rewrite run i's record so its artifact entry names ``path`` (with a wrong size)."""
    f = ctx.records_file()
    t = pq.read_table(f)
    rows = t.to_pylist()
    for row in rows:
        if row["run_id"] == ctx.run_ids[i]:
            entries = json.loads(row["artifacts"])
            entries[0] = dict(entries[0], path=path, size=1)
            row["artifacts"] = json.dumps(entries)
            if run_id is not None:
                row["run_id"] = run_id
    write_parquet(f, pa.Table.from_pylist(rows, schema=t.schema))


def _outcome_line(run_id: str, extra: dict | None) -> str:
    return f"{run_id}\tsuccess\t1000000\t2000000\t{{}}\t{json.dumps(extra) if extra else ''}\n"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


_WRITER = textwrap.dedent(
    """
    import json, shutil, sys
    from pathlib import Path
    from metalab.store.journal import JournalWriter
    spec = json.loads(sys.argv[1])
    w = JournalWriter(Path(spec["folder"]), sweep=spec["sweep"], part=0,
                      columns=spec["cols"], worker="crafted")
    for o in spec["outcomes"]:
        w.append(o)
    w.close()
    shutil.move(str(w.path), spec["dest"])
    """
)


def writer_journal(ctx: Ctx, sweep: str, outcomes: list) -> Path:
    """A journal written by metalab's own writer in a process that then exits (dead pid).

    Its runs are attempt 2 and end in 2096, so they are the current records.
    """
    dest = ctx.store / "journal" / "20000101T000000-deadbeef-000000-crafted0.jsonl"
    spec = {
        "folder": str(ctx.store / "journal"),
        "sweep": sweep,
        "cols": {**ctx.cols, "attempt": [2] * len(ctx.run_ids)},
        "outcomes": outcomes,
        "dest": str(dest),
    }
    subprocess.run([sys.executable, "-c", _WRITER, json.dumps(spec)], check=True)
    return dest


def raw_journal(ctx: Ctx, sweep: str) -> Path:
    """A journal whose header names ``sweep`` (one the writer cannot even create a file for)."""
    header = {
        "v": 2,
        "sweep": sweep,
        "part": 0,
        "host": HOST,
        "pid": dead_pid(),
        "worker": "crafted",
        "cols": ctx.cols,
    }
    dest = ctx.store / "journal" / "20000101T000000-deadbeef-000000-crafted1.jsonl"
    dest.write_text(json.dumps(header) + "\n" + _outcome_line(ctx.run_ids[0], None))
    return dest


def link(path: Path, target: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(target)


# --- the cases: each plants one hostile entry, returns text the report must contain ----------
def _abs_artifact(c: Ctx) -> str:
    set_artifact_path(c, str(c.sandbox / "secret.txt"))
    return "absolute"


def _dotdot_artifact(c: Ctx) -> str:
    set_artifact_path(c, f"artifacts/{c.run_ids[0]}/../../../sandbox/secret.txt")
    return "'..'"


def _dotdot_ssh(c: Ctx) -> str:
    set_artifact_path(c, "../sandbox/.ssh/id_rsa")
    return "'..'"


def _other_runs_folder(c: Ctx) -> str:
    set_artifact_path(c, f"artifacts/{c.run_ids[1]}/blob.json")
    return "artifacts/<its run id>/<file>"


def _healthy_records_file(c: Ctx) -> str:
    set_artifact_path(c, f"records/{c.records_file().name}")
    return "artifacts/<its run id>/<file>"


def _long_artifact(c: Ctx) -> str:
    set_artifact_path(c, f"artifacts/{c.run_ids[0]}/{'a' * 300}.json")
    return "bytes long"


def _nul_artifact(c: Ctx) -> str:
    set_artifact_path(c, f"artifacts/{c.run_ids[0]}/blob\x00.json")
    return "control character"


def _newline_artifact(c: Ctx) -> str:
    set_artifact_path(c, f"artifacts/{c.run_ids[0]}/blob\n/../../../../sandbox/secret.txt")
    return "control character"


def _dotdot_run_id(c: Ctx) -> str:
    set_artifact_path(c, "artifacts/../../sandbox/secret.txt", run_id="../../sandbox")
    return "'..'"


def _journal_line_artifact(c: Ctx) -> str:
    entry = {"name": "blob", "format": "json", "path": "../sandbox/secret.txt", "size": 1}
    entry["sha256"] = "0" * 64
    writer_journal(c, "20000101T000000-deadbeef", [_outcome(c, 0, entry)])
    return "'..'"


FUTURE_US = 4 * 10**15  # 2096


def _outcome(c: Ctx, i: int, artifact: dict) -> list:
    return [c.run_ids[i], "success", FUTURE_US, FUTURE_US + 1, {"y": 0}, {"artifacts": [artifact]}]


def _journal_sweep_dotdot(c: Ctx) -> str:
    # The form: "recovered-<sweep>" climbs out once records/recovered-x exists.
    (c.store / "records" / "recovered-x").mkdir()
    (c.store / "journal" / "x").mkdir()
    writer_journal(c, "x/../../../sandbox/evil", [_outcome_ok(c)])
    return "sweep is unusable"


def _journal_sweep_absolute(c: Ctx) -> str:
    writer_journal(c, str(c.sandbox / "evil"), [_outcome_ok(c)])
    return "sweep is unusable"


def _outcome_ok(c: Ctx) -> list:
    return [c.run_ids[0], "success", FUTURE_US, FUTURE_US + 1, {"y": 0}, None]


def _journal_sweep_long(c: Ctx) -> str:
    raw_journal(c, "s" * 5000)
    return "sweep is unusable"


def _journal_sweep_nul(c: Ctx) -> str:
    raw_journal(c, "a\x00/../../sandbox/evil")
    return "sweep is unusable"


def _run_folder_link(c: Ctx) -> str:
    link(c.store / "artifacts" / c.run_ids[0], c.sandbox / "victim")
    return c.run_ids[0]


def _artifact_file_link(c: Ctx) -> str:
    link(c.artifact(0), c.sandbox / "secret.txt")
    return "blob.json"


def _long_artifact_link(c: Ctx) -> str:
    name = "b" * 250
    (c.artifact(0).parent / name).symlink_to(c.sandbox / "secret.txt")
    set_artifact_path(c, f"artifacts/{c.run_ids[0]}/{name}")
    return name[:50]


def _artifact_hardlink(c: Ctx) -> str:
    c.artifact(0).unlink()
    os.link(c.sandbox / "victim" / "blob.json", c.artifact(0))
    return "blob.json"


def _records_file_link(c: Ctx) -> str:
    (c.store / "records" / "evil.parquet").symlink_to(c.sandbox / "valid.parquet")
    return "evil.parquet"


def _records_hardlink(c: Ctx) -> None:
    os.link(c.sandbox / "valid.parquet", c.store / "records" / "evil.parquet")


def _records_fifo(c: Ctx) -> str:
    os.mkfifo(c.store / "records" / "evil.parquet")
    return "evil.parquet"


def _journal_link(c: Ctx) -> str:
    (c.store / "journal" / "evil-000000-x.jsonl").symlink_to(c.sandbox / "secret.txt")
    return "evil-000000-x.jsonl"


def _sweep_file_link(c: Ctx) -> str:
    (c.store / "sweeps" / "evil.json").symlink_to(c.sandbox / "outside.json")
    return "evil.json"


def _payload_link(c: Ctx) -> str:
    (c.store / "sweeps" / "evil.payload").symlink_to(c.sandbox / "secret.txt")
    return "evil.payload"


def _temp_link(c: Ctx) -> None:
    tmp = c.store / "records" / ".tmp-0123456789ab-x.parquet"
    tmp.symlink_to(c.sandbox / "secret.txt")
    os.utime(tmp, (1e9, 1e9), follow_symlinks=False)  # old enough to be cleaned


def _manifest_link(c: Ctx) -> str:
    link(c.store / "manifest.json", c.sandbox / "manifest.json")
    return "manifest.json"


def _folder_link(folder: str) -> Callable[[Ctx], str]:
    def plant(c: Ctx) -> str:
        link(c.store / folder, c.sandbox / f"{folder}-copy")
        if folder == "quarantine":  # and something damaged to move through it
            (c.store / "records" / "torn.parquet").write_bytes(b"PAR1 torn")
        return f"{folder} is a symbolic link"

    return plant


CASES: dict[str, Callable[[Ctx], str | None]] = {
    "artifact-path-absolute": _abs_artifact,
    "artifact-path-dotdot": _dotdot_artifact,
    "artifact-path-dotdot-ssh": _dotdot_ssh,
    "artifact-path-other-run": _other_runs_folder,
    "artifact-path-healthy-records-file": _healthy_records_file,
    "artifact-path-300-bytes": _long_artifact,
    "artifact-path-nul": _nul_artifact,
    "artifact-path-newline": _newline_artifact,
    "record-run-id-dotdot": _dotdot_run_id,
    "journal-line-artifact-dotdot": _journal_line_artifact,
    "journal-sweep-dotdot": _journal_sweep_dotdot,
    "journal-sweep-absolute": _journal_sweep_absolute,
    "journal-sweep-5000-bytes": _journal_sweep_long,
    "journal-sweep-nul": _journal_sweep_nul,
    "run-folder-link": _run_folder_link,
    "artifact-file-link": _artifact_file_link,
    "artifact-250-byte-name-link": _long_artifact_link,
    "artifact-hard-link": _artifact_hardlink,
    "records-file-link": _records_file_link,
    "records-file-hard-link": _records_hardlink,
    "records-fifo": _records_fifo,
    "journal-link": _journal_link,
    "sweep-file-link": _sweep_file_link,
    "payload-link": _payload_link,
    "temp-file-link": _temp_link,
    "manifest-link": _manifest_link,
    **{
        f"{f}-folder-link": _folder_link(f)
        for f in ("records", "metrics", "journal", "artifacts", "sweeps", "quarantine")
    },
}


# --- the entry points ------------------------------------------------------------------------
def _artifacts(store: Path) -> None:
    errors = []
    for r in metalab.load_results(store):
        for call in (lambda r=r: r.artifact_path("blob"), lambda r=r: r.artifact("blob")):
            try:
                call()
            except StoreError as exc:  # each run on its own: one bad entry must not hide others
                errors.append(exc)
            except ResultsError:
                pass  # a crafted journal line recorded no artifact: a clear answer too
    if errors:
        raise errors[0]


def _cli(*argv: str) -> Callable[[], None]:
    def call() -> None:
        code = cli.main(list(argv))
        if code not in (0, 1):  # 1: the store holds failed runs
            raise StoreError(code, f"metalab {' '.join(argv)} exited {code}")

    return call


def entry_points(store: Path) -> dict[str, Callable[[], object]]:
    return {
        "load_results+table": lambda: metalab.load_results(store).table(),
        "artifact_path+artifact": lambda: _artifacts(store),
        "metalab show": _cli("show", str(store)),
        "metalab table": _cli("table", str(store)),
        "resume run()": lambda: metalab.run(_exp(), store=store),
        "run(resume=False)": lambda: metalab.run(_exp(), store=store, resume=False),
        "load_results after": lambda: metalab.load_results(store).table(),
    }


@pytest.mark.parametrize("case", list(CASES))
def test_crafted_store_touches_nothing_outside(ctx, case, capsys):
    marker = CASES[case](ctx)
    before = snapshot(ctx.sandbox)
    reports: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, call in entry_points(ctx.store).items():
            try:
                call()
            except StoreError as exc:  # a clear error is a fine answer; anything else is not
                reports.append(f"{name}: {exc}")
            after = snapshot(ctx.sandbox)
            assert after == before, f"{name} changed the sandbox: {_diff(before, after)}"
    reports += [str(w.message) for w in caught if issubclass(w.category, DamagedFileWarning)]
    reports.append(capsys.readouterr().err)  # what the CLI printed
    if marker is not None:  # the hostile entry was reported, by name or by what is wrong
        assert any(marker in r for r in reports), reports
    try:
        res = metalab.load_results(ctx.store)
    except StoreError:
        return  # refused outright (a store folder that is a link)
    xs = {r.params["x"] for r in res}
    assert xs == set(range(N_RUNS)) | (
        {100, 101, 102, 103} if case == "records-file-hard-link" else set()
    )


def _diff(before: dict, after: dict) -> str:
    keys = sorted(set(before) | set(after))
    return ", ".join(
        f"{k}: {before.get(k)} -> {after.get(k)}" for k in keys if before.get(k) != after.get(k)
    )


def test_every_run_comes_back_after_a_crafted_entry_is_set_aside(ctx):
    """Reported, never followed, then repaired by resume: the runs are whole again."""
    set_artifact_path(ctx, "../sandbox/.ssh/id_rsa")
    link(ctx.store / "artifacts" / ctx.run_ids[1], ctx.sandbox / "victim")
    link(ctx.artifact(2), ctx.sandbox / "secret.txt")
    before = snapshot(ctx.sandbox)
    with pytest.warns(DamagedFileWarning):
        metalab.run(_exp(), store=ctx.store)
    assert snapshot(ctx.sandbox) == before
    res = metalab.load_results(ctx.store)
    assert sorted(r.params["x"] for r in res) == list(range(N_RUNS))
    for r in res:
        assert r.artifact("blob") == {"x": r.params["x"]}
        assert r.artifact_path("blob").resolve().is_relative_to(ctx.store.resolve())


def test_store_reached_through_a_link_is_fine(tmp_path, healthy):
    """Only the store's own folders may not be links; the root is resolved once."""
    real = tmp_path / "real"
    shutil.copytree(healthy[0], real)
    (tmp_path / "via-link").symlink_to(real)
    res = metalab.run(_exp(), store=tmp_path / "via-link")
    assert len(res) == N_RUNS
    for r in res:
        assert r.artifact("blob") == {"x": r.params["x"]}
