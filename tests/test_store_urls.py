"""A store given as a URL (``s3://bucket/x``) is refused with a clear error, not made a folder."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import metalab
from metalab.store.urls import check_store_path

URLS = ["s3://bucket/x", "gs://bucket/x", "az://container/x", "http://host/x", "file:///tmp/x"]


@metalab.operation(name="url_op", version="1")
def url_op(params):
    return {"y": params["x"]}


def _exp() -> metalab.Experiment:
    return metalab.Experiment("urls", url_op, params=metalab.grid(x=[1, 2]))


def _left_behind(cwd: Path) -> list[str]:
    return sorted(p.name for p in cwd.iterdir())


@pytest.mark.parametrize("url", URLS)
def test_run_refuses_a_url_and_creates_nothing(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(metalab.StoreError) as info:
        metalab.run(_exp(), store=url)
    msg = str(info.value)
    assert f"store={url!r} is a URL" in msg  # as typed, though run() makes it a Path
    assert "shared filesystem" in msg and "object stores" in msg and "not supported" in msg
    assert info.value.errno == errno.EINVAL
    assert _left_behind(tmp_path) == []  # no "s3:" folder (what happened before)


def test_pathlib_paths_and_the_file_scheme(tmp_path):
    # Path("s3://bucket/x") collapses to "s3:/bucket/x": still recognised, shown as typed.
    with pytest.raises(metalab.StoreError, match=r"store='s3://bucket/x' is a URL"):
        metalab.run(_exp(), store=Path("s3://bucket/x"))
    target = tmp_path / "store"
    with pytest.raises(metalab.StoreError, match=f"Pass the path itself: store='{target}'"):
        metalab.run(_exp(), store=f"file://{target}")
    assert not target.exists()
    with pytest.raises(metalab.StoreError, match="mount the bucket"):
        check_store_path("s3://bucket/x")


def test_load_results_refuses_a_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for url in URLS:
        with pytest.raises(metalab.StoreError, match="is a URL, not a folder path"):
            metalab.load_results(url)
    metalab.run(_exp(), store="real")
    with pytest.raises(metalab.StoreError, match="'gs://b/y' is a URL"):
        metalab.load_results(["real", "gs://b/y"])  # one URL among stores
    assert _left_behind(tmp_path) == ["real"]


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


def test_cli_refuses_a_url_in_one_line(tmp_path):
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
    for args in (
        ["run", "exp.py:exp", "--store", "s3://bucket/x"],
        ["show", "gs://bucket/x"],
        ["table", "az://container/x"],
        ["report", "s3://bucket/x"],
    ):
        proc = _cli(*args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[0].startswith("metalab: error: store=") and "is a URL" in lines[0]
        assert "object stores" in lines[0]
    assert _left_behind(tmp_path) == ["exp.py"]
