"""A real S3 API server for the tests and the S3 benchmark: moto's standalone server.

``python tests/s3_server.py --port P`` serves moto's S3 (the same app ``moto_server``
runs) on 127.0.0.1, wrapped in a counter of every request and of the body bytes it
sends back, read at ``GET /_counts`` and zeroed by ``POST /_counts`` (the benchmark's
requests per 1,000 runs and bytes fetched, seen by the server: the driver's and the
workers' requests alike).  :class:`MotoServer` starts it as a subprocess on a free port;
the pytest fixtures below give a session-wide server (``AWS_*`` set for the session)
and a fresh bucket per test.  Tests using them are marked ``s3`` and are skipped only
when moto or s3fs is not installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: What every test process (and the subprocesses it starts) uses against the server.
KEY_ID, SECRET = "testing-key-id", "testing-secret-9f2c"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """``python tests/s3_server.py`` as a subprocess on 127.0.0.1 (see the module docstring)."""

    def __init__(self, env: dict[str, str] | None = None, log: Path | None = None) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        out = open(log, "ab") if log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--port", str(self.port)],
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=out,
        )
        if log is not None:
            out.close()  # type: ignore[union-attr]
        self._wait()

    def _wait(self, deadline_s: float = 120.0) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}")
            with contextlib.suppress(OSError):
                self.counts()
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto server did not answer on {self.endpoint} in {deadline_s} s")

    def counts(self) -> dict[str, int]:
        """Requests by method, ``requests`` and ``bytes_out`` since the last reset."""
        with urllib.request.urlopen(f"{self.endpoint}/_counts", timeout=10) as r:
            return dict(json.loads(r.read()))

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.endpoint}/_counts", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the server process ------------------------------------------------------------------
class _Counter:
    """WSGI middleware: counts requests (by method) and response body bytes."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def _add(self, key: str, n: int) -> None:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/_counts":
            if environ["REQUEST_METHOD"] == "POST":
                with self.lock:
                    self.counts = {}
            with self.lock:
                body = json.dumps(self.counts).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        self._add("requests", 1)
        self._add(environ["REQUEST_METHOD"], 1)
        return self._body(self.app(environ, start_response))

    def _body(self, chunks: Any) -> Iterator[bytes]:
        try:
            for chunk in chunks:
                self._add("bytes_out", len(chunk))
                yield chunk
        finally:
            if hasattr(chunks, "close"):
                chunks.close()


def _serve(port: int) -> None:
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", port, _Counter(app), threaded=True, request_handler=MotoRequestHandler)


# -- pytest fixtures -----------------------------------------------------------------------
def _have_moto() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("moto", "s3fs", "werkzeug"))


def client_env(endpoint: str, home: Path) -> dict[str, str]:
    """The ``AWS_*`` variables pointing botocore/s3fs at ``endpoint``; the AWS config
    files are moved to an empty folder so the machine's own never interfere."""
    return {
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto S3 server for the session, the ``AWS_*`` environment pointing at it."""
    if not _have_moto():
        pytest.skip("moto[server] and s3fs are not installed (uv sync installs them)")
    home = tmp_path_factory.mktemp("aws")
    server = MotoServer(log=home / "moto.log")
    env = client_env(server.endpoint, home)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield server
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture
def s3_store(s3_server: MotoServer) -> str:
    """``s3://bucket-<uuid>/store`` in a bucket made for this test."""
    import s3fs

    bucket = f"bucket-{uuid.uuid4().hex[:16]}"
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(bucket)
    return f"s3://{bucket}/store"


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="moto's S3 server with request counters")
    ap.add_argument("--port", type=int, required=True)
    _serve(ap.parse_args().port)
