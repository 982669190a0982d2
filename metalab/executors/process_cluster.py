"""A local cluster whose workers never import the user's ``__main__``.

``distributed.LocalCluster`` starts each worker with ``multiprocessing``'s *spawn*
method, which re-imports the driver's ``__main__`` in every worker: a script without
``if __name__ == "__main__":`` starts a new sweep (and a new cluster) in each worker and
dies in tracebacks ("Nanny failed to start"), and with the guard its module-level code
still runs once per worker.  Here the scheduler runs in the driver and every worker is a
fresh ``python -c`` process running distributed's ``dask spec`` entry point, restarted
by the driver when it dies, so nothing of the script runs there; the operation reaches
the workers by value (:mod:`metalab.sweep.shipping`).

Each worker process watches its stdin, a pipe only the driver holds: when the driver dies
(even by SIGKILL) the pipe closes and the worker exits at once, like ``LocalCluster``'s
workers, so an orphan never goes on writing records.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import ExecutorConfigError, ExecutorError

#: Run by each worker process: exit when the driver's pipe closes, then run ``dask spec``.
_BOOTSTRAP = """\
import os, sys, threading
def _watch():
    while sys.stdin.buffer.read(1):
        pass
    os._exit(1)
threading.Thread(target=_watch, daemon=True).start()
from distributed.cli.dask_spec import main
main(sys.argv[1:])
"""

#: Worker processes started again after deaths, per worker slot: beyond, a crash loop.
_MAX_RESTARTS = 100

#: LocalCluster keywords that configure the cluster, not the workers.
_CLUSTER_KEYS = {"host", "scheduler_port", "dashboard_address", "silence_logs"}
_REFUSED = {"processes", "n_workers", "worker_class", "scheduler_kwargs", "asynchronous"}


def _worker_env(silence_logs: int | bool) -> dict[str, str]:
    """The driver's environment, its ``sys.path`` and its Dask configuration."""
    import dask

    env = dict(os.environ)
    # A script's folder and the driver's sys.path stay importable, as with spawn.
    paths = [p or os.getcwd() for p in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    config = dask.config.merge(dask.config.config, {})
    if silence_logs:
        level = logging.getLevelName(int(silence_logs)).lower()
        config.setdefault("logging", {})["distributed"] = level
    env["DASK_INTERNAL_INHERIT_CONFIG"] = dask.config.serialize(config)
    return env


def _worker_class() -> Any:
    from distributed.deploy.spec import ProcessInterface

    class ScriptSafeWorker(ProcessInterface):
        """A ``distributed.Worker`` in a ``python -c`` process, restarted when it dies.

        The driver supervises the process (as a ``Nanny`` would, without a second
        interpreter per worker: start-up costs one import of distributed per worker).
        """

        def __init__(
            self,
            scheduler: str,
            name: str | None = None,
            *,
            worker_kwargs: dict[str, Any],
            env: dict[str, str],
            log: str,
        ) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self.scheduler, self.name, self.env, self.log = scheduler, name, env, log
            self.worker_kwargs = {**worker_kwargs, "name": name}
            self.process: asyncio.subprocess.Process | None = None
            self.exits = 0  # how often a worker process ended on its own
            self._supervisor: asyncio.Task[None] | None = None

        async def _spawn(self) -> asyncio.subprocess.Process:
            spec = json.dumps({"cls": "distributed.Worker", "opts": self.worker_kwargs})
            with open(self.log, "ab") as err:
                return await asyncio.create_subprocess_exec(
                    *[sys.executable, "-c", _BOOTSTRAP, self.scheduler, "--spec", spec],
                    stdin=subprocess.PIPE,
                    stdout=err,
                    stderr=err,
                    env=self.env,
                    # Ctrl-C reaches the driver only; it closes the cluster itself.
                    start_new_session=True,
                )

        async def _supervise(self) -> None:
            while self.exits < _MAX_RESTARTS:
                assert self.process is not None
                await self.process.wait()
                self.exits += 1
                self.process = await self._spawn()

        async def start(self) -> None:
            self.process = await self._spawn()
            self._supervisor = asyncio.create_task(self._supervise())
            await super().start()  # type: ignore[no-untyped-call]

        async def close(self) -> None:
            if self._supervisor is not None:
                self._supervisor.cancel()
            if self.process is not None and self.process.returncode is None:
                self.process.kill()
                await self.process.communicate()
            await super().close()  # type: ignore[no-untyped-call]

    return ScriptSafeWorker


def _split_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """LocalCluster-style keywords as (cluster options, Nanny options)."""
    refused = sorted(set(kwargs) & _REFUSED)
    if refused:
        raise ExecutorConfigError(
            f"ProcessExecutor does not take {', '.join(refused)}; it always starts "
            "max_workers worker processes (use DaskExecutor(cluster) for a cluster of your own)"
        )
    cluster = {k: v for k, v in kwargs.items() if k in _CLUSTER_KEYS}
    worker = {k: v for k, v in kwargs.items() if k not in _CLUSTER_KEYS}
    if "threads_per_worker" in worker:
        worker["nthreads"] = worker.pop("threads_per_worker")
    try:
        json.dumps(worker)
    except TypeError as exc:
        raise ExecutorConfigError(
            f"ProcessExecutor's worker options must be plain data (numbers, strings, "
            f"lists, dicts) to reach the worker processes: {exc}"
        ) from None
    return cluster, worker


class _QuietShutdown(logging.Filter):
    """Drops distributed's INFO record of a comm closed as the cluster shuts down: it
    carries a traceback, printed after the silenced logging is restored, that users
    take for an error of their script."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not str(record.msg).startswith(
            "Batched Comm Closed"
        )


_QUIET = _QuietShutdown()


def start_cluster(n_workers: int, kwargs: dict[str, Any]) -> tuple[Any, Path]:
    """Start the scheduler here and ``n_workers`` worker processes; return it and its log."""
    from distributed import Scheduler, SpecCluster

    logging.getLogger("distributed.batched").addFilter(_QUIET)  # once: filters are a set

    opts, worker_opts = _split_kwargs(kwargs)
    host = opts.get("host") or "127.0.0.1"
    silence = opts.get("silence_logs", logging.CRITICAL)
    log = Path(tempfile.mkdtemp(prefix="metalab-workers-")) / "workers.log"
    worker_kwargs = {"host": host, "nthreads": 1, "silence_logs": silence, **worker_opts}
    env = _worker_env(silence)
    spec = {
        "cls": _worker_class(),
        "options": {"worker_kwargs": worker_kwargs, "env": env, "log": str(log)},
    }
    scheduler = {
        "cls": Scheduler,
        "options": {
            "host": host,
            "port": opts.get("scheduler_port", 0),
            "dashboard_address": opts.get("dashboard_address", ":0"),
        },
    }
    cluster = SpecCluster(
        workers={i: spec for i in range(n_workers)},
        scheduler=scheduler,
        silence_logs=silence,
        name="metalab",
    )
    return cluster, log


def wait_for_workers(cluster: Any, client: Any, n: int, timeout_s: float | None) -> None:
    """Block until the ``n`` workers joined; fail at once when a worker process exits."""
    deadline = None if timeout_s is None else time.monotonic() + max(timeout_s, 60.0)
    log = next(iter(cluster.workers.values())).log
    while len(client.scheduler_info(n_workers=-1)["workers"]) < n:
        dead = any(w.exits for w in cluster.workers.values())
        if dead or (deadline is not None and time.monotonic() > deadline):
            tail = Path(log).read_text(errors="replace").strip().splitlines()[-5:]
            what = "a worker process exited" if dead else "the worker processes did not start"
            raise ExecutorError(f"ProcessExecutor: {what}: " + " | ".join(tail or ["(no output)"]))
        time.sleep(0.05)
