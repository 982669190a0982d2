"""Store locations given as URLs: credentials refused, errors name the URL, never a folder.

The S3 server tests are in test_s3_store.py; these need no server: the URL checks, the
``file://`` and ``memory://`` filesystems, and a missing filesystem package.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

import metalab
from metalab.store.urls import check_store_path, redact

SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"
WITH_CREDENTIALS = [
    f"s3://AKIAEXAMPLE:{SECRET}@bucket/x",
    f"s3://{SECRET}@bucket/x",
    f"gs://bucket/x?token={SECRET}",
]


@metalab.operation(name="url_op", version="1")
def url_op(params, capture):
    capture.artifact("echo.json", {"x": params["x"]})
    return {"y": params["x"]}


def _exp() -> metalab.Experiment:
    return metalab.Experiment("urls", url_op, params=metalab.grid(x=[1, 2]))


def _left_behind(cwd: Path) -> list[str]:
    return sorted(p.name for p in cwd.iterdir())


@pytest.mark.parametrize("url", WITH_CREDENTIALS)
def test_a_url_with_credentials_is_refused_without_showing_them(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for call in (lambda: metalab.run(_exp(), store=url), lambda: metalab.load_results(url)):
        with pytest.raises(metalab.StoreError) as info:
            call()
        msg = str(info.value)
        assert "carries credentials" in msg and "storage_options" in msg
        assert SECRET not in msg and SECRET not in repr(info.value.args)
        assert info.value.errno == errno.EINVAL
    assert _left_behind(tmp_path) == []  # no "s3:" folder
    assert SECRET not in redact(url)


def test_pathlib_collapsed_urls_stay_urls(tmp_path, monkeypatch):
    # Path("s3://bucket/x") is "s3:/bucket/x": still the URL, never a local folder "s3:".
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(metalab.StoreError, match=r"store s3://bucket/x: opening the store failed"):
        metalab.run(_exp(), store=Path("s3://bucket/x"))
    assert _left_behind(tmp_path) == []


def test_the_file_scheme_is_a_local_folder(tmp_path):
    target = tmp_path / "store"
    res = metalab.run(_exp(), store=f"file://{target}")
    assert res.counts()["success"] == 2 and (target / "manifest.json").exists()
    assert len(metalab.load_results(f"file://{target}").frame.compute()) == 2


def test_a_memory_store_round_trips(tmp_path, monkeypatch):
    # fsspec's in-memory filesystem: the remote-store code path, in one process.
    monkeypatch.chdir(tmp_path)
    url = f"memory://metalab-{uuid.uuid4().hex[:8]}/urls"
    res = metalab.run(_exp(), store=url)
    assert res.counts()["success"] == 2
    again = metalab.load_results(url)
    df = again.frame.compute()
    assert sorted(df["y"]) == [1, 2]
    run = again[df["run_id"].iloc[0]]
    assert run.artifact("echo.json") == {"x": int(df["x"].iloc[0])}
    assert metalab.run(_exp(), store=url).counts()["success"] == 2  # resumed: nothing runs
    assert _left_behind(tmp_path) == []  # the local mirror is not in the working folder


def test_a_missing_filesystem_names_the_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pytest.importorskip("s3fs")
    if any(_installed(m) for m in ("gcsfs",)):
        pytest.skip("gcsfs is installed")
    with pytest.raises(metalab.StoreError, match="install gcsfs"):
        metalab.run(_exp(), store="gs://bucket/x")
    assert _left_behind(tmp_path) == []


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_folder_paths_are_not_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for ok in ["runs/x", "./s3:x", "a:b", "C:/x", str(tmp_path / "st:ore")]:
        check_store_path(ok)
    res = metalab.run(_exp(), store="weird:name")  # a colon alone is a legal folder name
    assert res.counts()["success"] == 2 and (tmp_path / "weird:name" / "manifest.json").exists()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METALAB")}
    return subprocess.run(
        [sys.executable, "-m", "metalab", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )


def test_cli_refuses_credentials_in_a_url_in_one_line(tmp_path):
    (tmp_path / "exp.py").write_text(
        textwrap.dedent(
            """
            import metalab

            @metalab.operation(name="op", version="1")
            def op(params):
                return {"y": params["x"]}

            exp = metalab.Experiment("cli_urls", op, params=metalab.grid(x=[1]))
            """
        )
    )
    url = WITH_CREDENTIALS[0]
    for args in (
        ["run", "exp.py:exp", "--store", url],
        ["show", url],
        ["table", url],
        ["report", url],
    ):
        proc = _cli(*args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[0].startswith("metalab: error: store=") and "carries credentials" in lines[0]
        assert SECRET not in proc.stderr + proc.stdout
    assert _left_behind(tmp_path) == ["exp.py"]
