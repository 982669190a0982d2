"""Shared fixtures: a clean working folder per test, a suite-wide LocalCluster, SLURM detection."""

from __future__ import annotations

import shutil

import pytest
from s3_server import s3_server, s3_store  # noqa: F401  (the S3 fixtures: tests/s3_server.py)


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path, monkeypatch):
    """Every test runs in its own empty working directory (default stores land there)."""
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture(scope="session")
def local_cluster():
    """One LocalCluster (2 single-threaded worker processes) shared by the cluster tests."""
    import logging

    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.CRITICAL,
    )
    yield cluster
    cluster.close()


@pytest.fixture
def client(local_cluster):
    """A distributed Client on the shared LocalCluster."""
    from distributed import Client

    with Client(local_cluster, set_as_default=False) as c:
        yield c


def pytest_collection_modifyitems(config, items):
    if shutil.which("sinfo") is None:
        skip = pytest.mark.skip(reason="SLURM not found (run ../shared/scripts/start-slurm.sh)")
        for item in items:
            if "slurm" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(options)`` mounts a tmpfs and returns it (tests run as root); the test is
    skipped where mounting is not allowed. Unmounted at the end."""
    import subprocess
    from pathlib import Path

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)],
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
        mounted.append(mnt)
        return mnt

    yield mount
    for m in mounted:
        subprocess.run(["umount", "-l", str(m)], check=False)


@pytest.fixture
def fill_disk():
    """``fill(folder)`` writes a ballast file into ``folder`` until its (small) file
    system is full (ENOSPC) and returns the ballast's path."""
    import errno
    import os

    def fill(folder):
        ballast = folder / "ballast"
        fd = os.open(ballast, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        return ballast

    return fill
