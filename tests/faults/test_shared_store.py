"""A store shared by several users and several experiments (issue 11, items 2 and 8).

* A second real user (created with ``useradd`` when missing; the test needs root) reads a
  shared store in which one file is ``0600`` and owned by root. Every read either gives a
  clear ``StoreError`` naming that file and ``EACCES``, or a correct result; and nothing in
  the store moves (a permission error is not damage: before, that user's read moved the
  colleague's healthy file into ``quarantine/`` for everyone).
* Two experiments race to create a new store, in real processes, ten rounds: exactly one
  wins, the other gets a clear ``StoreError``, and the loser writes nothing into the store.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import metalab

OTHER_USER = "metalab-other"
N_RUNS = 6

_EXPERIMENT = textwrap.dedent(
    """
    import metalab

    @metalab.operation(name="shared", version="1")
    def op(params, capture):
        capture.metric("y", params["x"] * 2)
        capture.metric("curve", params["x"] / 2, step=0)
        capture.artifact("blob", {"x": params["x"]})

    EXP = metalab.Experiment(name="shared", operation=op, params=metalab.grid(x=list(range(6))))
    """
)

#: Run as the other user: each action on the store in turn; per action its outcome and the
#: store's listing afterwards (path -> inode), as one JSON line.
_CHILD = _EXPERIMENT + textwrap.dedent(
    """
    import contextlib, io, json, sys, warnings
    from pathlib import Path
    from metalab import cli

    def act(store, action, out):
        if action == "load":
            res = metalab.load_results(store)
            res.table()
            out["xs"] = sorted(r.params["x"] for r in res)
        elif action == "artifacts":
            out["blobs"] = [r.artifact("blob") for r in metalab.load_results(store)]
        elif action == "steps":
            res = metalab.load_results(store)
            out["curves"] = [r.metric_series("curve").tolist() for r in res]
        elif action in ("show", "table"):
            out["code"] = cli.main([action, store])
        elif action == "resume":
            out["xs"] = sorted(r.params["x"] for r in metalab.run(EXP, store=store))

    store, actions = sys.argv[1], sys.argv[2].split(",")
    outcomes = {}
    for action in actions:
        out = outcomes[action] = {"ok": True}
        err = io.StringIO()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                    act(store, action, out)
            except Exception as exc:
                out.update(ok=False, type=type(exc).__name__, message=str(exc),
                           errno=getattr(exc, "errno", None))
        out["stderr"] = err.getvalue()
        out["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
        out["listing"] = {str(p.relative_to(store)): p.lstat().st_ino
                          for p in Path(store).rglob("*")}
    print(json.dumps(outcomes, default=str))
    """
)


def _other_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(OTHER_USER)
    except KeyError:
        pass
    cmd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot create a second user with useradd: {exc}")
    return pwd.getpwnam(OTHER_USER)


def _python_for(user: pwd.struct_passwd, home: Path) -> tuple[list[str], dict[str, str]]:
    """An interpreter that ``user`` can run and that imports this metalab (or skip)."""
    import pyarrow

    roots = [str(Path(metalab.__file__).parents[1]), str(Path(pyarrow.__file__).parents[1])]
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "PYTHONPATH": os.pathsep.join(roots),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    tried = []
    for exe in dict.fromkeys([sys.executable, f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"]):
        if not os.path.exists(exe):
            continue
        try:
            probe = _as_user(user, [exe, "-c", "import metalab, pyarrow, pandas"], env, check=False)
        except OSError as exc:  # e.g. inside a folder that user may not enter
            tried.append(f"{exe}: {exc}")
            continue
        if probe.returncode == 0:
            return [exe], env
        tried.append(f"{exe}: {probe.stderr.strip().splitlines()[-1:]}")
    pytest.skip(f"no Python that user {user.pw_name} may run imports metalab ({tried})")


def _as_user(
    user: pwd.struct_passwd, argv: list[str], env: dict[str, str], *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=check,
        cwd=env["HOME"],
    )


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[pwd.struct_passwd, list[str], dict[str, str], Path]]:
    """The other user, how to run Python as them, and a folder both users can reach."""
    if os.geteuid() != 0:
        pytest.skip("needs root: it creates a second user and runs processes as that user")
    user = _other_user()
    base = Path(tempfile.mkdtemp(prefix="metalab-shared-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        home = base / "home"
        home.mkdir()
        os.chown(home, user.pw_uid, user.pw_gid)
        (base / "child.py").write_text(_CHILD)
        python, env = _python_for(user, home)
        yield user, python, env, base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _make_store(path: Path) -> None:
    """A store filled by root (this process), opened up like a project folder: dirs 0777."""
    scope: dict[str, object] = {}
    exec(_EXPERIMENT, scope)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metalab.run(scope["EXP"], store=path, partition_size=3)  # 2 records + 2 metrics files
    for dirpath, _dirnames, filenames in os.walk(path):
        os.chmod(dirpath, 0o777)
        for f in filenames:
            os.chmod(Path(dirpath, f), 0o644)


def _add_dead_journal(store: Path) -> Path:
    """A journal of a writer that is gone (written by metalab's writer in a child)."""
    import pyarrow.parquet as pq

    t = pq.read_table(sorted((store / "records").glob("*.parquet"))[0])
    cols = {k: t.column(k).to_pylist() for k in ("run_id", "params", "replicate", "seed")}
    cols["attempt"] = [2] * t.num_rows
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from metalab.store.journal import JournalWriter
        cols = json.loads(sys.argv[2])
        w = JournalWriter(Path(sys.argv[1]), sweep="20000101T000000-deadbeef", part=0,
                          columns=cols, worker="gone")
        w.append([cols["run_id"][0], "success", 4 * 10**15, 4 * 10**15 + 1, {"y": 0}, None])
        w.close()
        print(w.path)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(store / "journal"), json.dumps(cols)],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def _victim(store: Path, kind: str) -> Path:
    if kind == "journal":
        return _add_dead_journal(store)
    if kind == "artifact":
        return sorted((store / "artifacts").glob("*/blob.json"))[0]
    if kind == "manifest":
        return store / "manifest.json"
    folder = {"records": "records", "metrics": "metrics", "sweep": "sweeps"}[kind]
    return sorted(p for p in (store / folder).iterdir() if p.suffix in (".parquet", ".json"))[0]


def _listing(store: Path) -> dict[str, int]:
    return {str(p.relative_to(store)): p.lstat().st_ino for p in store.rglob("*")}


KINDS = ["records", "metrics", "journal", "artifact", "sweep", "manifest"]
ACTIONS = ["load", "artifacts", "steps", "show", "table", "resume"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_file_the_reader_may_not_open_is_named_and_never_moved(shared, kind):
    user, python, env, base = shared
    store = base / f"store-{kind}"
    _make_store(store)
    victim = _victim(store, kind)
    os.chmod(victim, 0o600)  # root's file: the other user may not read it
    rel = str(victim.relative_to(store))
    before = _listing(store)
    argv = [*python, str(base / "child.py"), str(store), ",".join(ACTIONS)]
    outcomes = json.loads(_as_user(user, argv, env).stdout.strip().splitlines()[-1])
    for action, out in outcomes.items():
        listing = out.pop("listing")
        assert listing[rel] == before[rel], (action, out)  # the file was not moved
        assert not any(k.startswith("quarantine") for k in listing), (action, out)
        if action != "resume":
            assert listing == before, (action, out)  # a read moves nothing at all
        if out["ok"]:
            _check_correct(action, out)
        else:  # a clear error naming the file and the errno; nothing else
            assert out["type"] == "StoreError", (action, out)
            assert out["errno"] == errno.EACCES, (action, out)
            assert str(victim) in out["message"] and "EACCES" in out["message"], (action, out)
        assert not any("DamagedFileWarning" in w for w in out["warnings"]), (action, out)
        if action in ("show", "table") and out["code"] != 0:
            assert str(victim) in out["stderr"] and "EACCES" in out["stderr"], (action, out)
    assert victim.lstat().st_ino == before[rel] and _listing(store).get(rel) == before[rel]
    if kind in ("records", "journal"):  # the read needs that file: a clear error
        assert not outcomes["load"]["ok"]


def _check_correct(action: str, out: dict) -> None:
    if action in ("load", "resume"):
        assert out["xs"] == list(range(N_RUNS)), out
    elif action == "artifacts":
        assert sorted(b["x"] for b in out["blobs"]) == list(range(N_RUNS)), out
    elif action == "steps":
        assert len(out["curves"]) == N_RUNS, out


def test_owner_still_reads_everything_after_the_other_user_tried(shared):
    """The colleague's file is where it was, whole: its owner reads every run."""
    user, python, env, base = shared
    store = base / "store-owner"
    _make_store(store)
    victim = sorted((store / "records").glob("*.parquet"))[0]
    os.chmod(victim, 0o600)
    _as_user(user, [*python, str(base / "child.py"), str(store), "load"], env)
    res = metalab.load_results(store)
    assert sorted(r.params["x"] for r in res) == list(range(N_RUNS))
    assert {r.status for r in res} == {"success"}


# --- two experiments racing for a new store --------------------------------------------------
_RACER = textwrap.dedent(
    """
    import os, sys, time
    import metalab

    store, name, go = sys.argv[1], sys.argv[2], sys.argv[3]

    @metalab.operation(name=name, version="1")
    def op(params, capture):
        capture.metric("y", params["x"])

    exp = metalab.Experiment(name=name, operation=op, params=metalab.grid(x=list(range(5))))
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.0005)
    try:
        metalab.run(exp, store=store)
    except metalab.StoreError as exc:
        print(f"StoreError: {exc}", flush=True)
        sys.exit(3)
    print("won", flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(10))
def test_two_experiments_racing_for_a_new_store_exactly_one_wins(tmp_path, round_):
    store, go = tmp_path / "new-store", tmp_path / "go"
    names = ["alpha", "beta"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(store), name, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    for p in procs:  # both imported metalab and wait at the barrier
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
    go.touch()
    results = [(*p.communicate(timeout=300), p.returncode) for p in procs]
    codes = [rc for _, _, rc in results]
    assert sorted(codes) == [0, 3], results
    winner = names[codes.index(0)]
    loser_out = results[codes.index(3)][0]
    assert "belongs to experiment" in loser_out and repr(winner) in loser_out, loser_out
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["experiment"] == winner
    res = metalab.load_results(store)
    assert len(res) == 5 and {r.record["sweep"] for r in res} <= _sweeps(store)
    sweeps = [json.loads(p.read_text()) for p in (store / "sweeps").glob("*.json")]
    assert [s["experiment"] for s in sweeps] == [winner]  # the loser wrote nothing
    assert not list(store.rglob(".tmp-*"))


def _sweeps(store: Path) -> set[str]:
    return {p.stem for p in (store / "sweeps").glob("*.json")}


def test_manifest_is_created_once_even_when_already_there_is_the_same(tmp_path):
    """The same experiment finds its own manifest and goes on (no error, one file)."""
    from metalab.store import Store

    st = Store.open(tmp_path / "s", create=True)
    first = st.ensure_manifest({"experiment": "same", "runs": 1})
    again = Store.open(tmp_path / "s", create=True).ensure_manifest({"experiment": "same"})
    assert first == again
    with pytest.raises(metalab.StoreError, match="belongs to experiment 'same'"):
        st.ensure_manifest({"experiment": "other"})
    assert [p.name for p in (tmp_path / "s").iterdir() if p.is_file()] == ["manifest.json"]


def test_exclusive_creation_never_replaces_an_existing_file(tmp_path):
    from metalab.store.store import create_exclusive

    path = tmp_path / "manifest.json"
    assert create_exclusive(path, "first\n")
    assert not create_exclusive(path, "second\n")
    assert path.read_text() == "first\n"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temp left
