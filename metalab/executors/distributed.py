"""Executors on ``distributed``: a LocalCluster of processes, or any existing cluster."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from ..errors import ExecutorConfigError, ExecutorError
from .base import Executor, Session

#: Worker deaths a partition task survives before Dask gives up on it; metalab marks the
#: run that kills its worker as failed after two deaths, well before this.
ALLOWED_FAILURES = 10


def _count_workers(client: Any) -> int:
    try:
        return max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
    except TypeError:  # older distributed
        return max(1, len(client.scheduler_info()["workers"]))
    except Exception:
        return 1


class ProcessExecutor(Executor):
    """A local Dask cluster of ``max_workers`` single-threaded worker processes.

    metalab starts the cluster for the sweep and closes it afterwards, also on errors
    and Ctrl-C; in a ``with ProcessExecutor(...) as exe:`` block the cluster starts once
    and serves every ``metalab.run(..., executor=exe)`` of the block (a dead worker is
    replaced), and closes at the block's end.  The workers are fresh Python processes
    that never import your ``__main__``, so a plain script needs no
    ``if __name__ == "__main__":`` guard and its module-level code runs once, in the driver.

    Parameters
    ----------
    max_workers
        Worker processes (default: the number of CPUs).
    worker_timeout_s
        Fail with :class:`~metalab.ExecutorError` when no worker is alive for this long.
    **cluster_kwargs
        ``distributed.LocalCluster``-style options: ``host``, ``scheduler_port``,
        ``dashboard_address``, ``silence_logs``, ``threads_per_worker``; the others go to
        each worker's ``Nanny`` as plain data, e.g. ``resources={"GPU": 1}`` or
        ``memory_limit="4GiB"``.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        worker_timeout_s: float | None = 60.0,
        **cluster_kwargs: Any,
    ) -> None:
        if max_workers is not None and max_workers < 1:
            raise ExecutorConfigError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers or os.cpu_count() or 1
        self.worker_timeout_s = worker_timeout_s
        self.cluster_kwargs = cluster_kwargs

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """Start the cluster, compute on it, close it (also on errors and Ctrl-C)."""
        import dask
        from distributed import Client

        from .process_cluster import start_cluster, wait_for_workers

        with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
            try:
                cluster, log = start_cluster(self.max_workers, self.cluster_kwargs)
            except ExecutorConfigError:
                raise
            except Exception as exc:
                raise ExecutorError(f"could not start the worker processes: {exc}") from exc
        try:
            client = Client(cluster, set_as_default=False)
            try:
                wait_for_workers(cluster, client, self.max_workers, self.worker_timeout_s)
                yield Session(
                    n_workers=self.max_workers,
                    client=client,
                    worker_timeout_s=self.worker_timeout_s,
                )
            finally:
                client.close()
        finally:
            cluster.close()
            import shutil  # here: `import metalab` stays light

            shutil.rmtree(log.parent, ignore_errors=True)


class DaskExecutor(Executor):
    """Run on an existing ``distributed`` cluster: a Client, a cluster object, or an address.

    metalab never closes a client or cluster handed to it (it closes only the client it
    opens itself for a cluster object or an address).

    Parameters
    ----------
    target
        A ``distributed.Client``, a cluster object (``LocalCluster``, ``SLURMCluster``,
        ...) or a scheduler address such as ``"tcp://10.0.0.5:8786"``; ``None`` uses the
        active default client.
    timeout_s
        How long to wait for the connection to the scheduler.
    worker_timeout_s
        Fail with :class:`~metalab.ExecutorError` when no usable worker is connected for
        this long; ``None`` waits forever.
    """

    def __init__(
        self,
        target: Any = None,
        *,
        timeout_s: float = 60.0,
        worker_timeout_s: float | None = 300.0,
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.worker_timeout_s = worker_timeout_s

    def _connect(self) -> tuple[Any, bool]:
        """The client to compute on, and whether metalab opened it (and must close it)."""
        from distributed import Client

        target = self.target
        if target is None:
            from distributed import default_client

            try:
                return default_client(), False
            except ValueError:
                raise ExecutorError(
                    "DaskExecutor() found no active distributed Client; pass one: "
                    "DaskExecutor(client), DaskExecutor(cluster) or DaskExecutor('tcp://host:8786')"
                ) from None
        if isinstance(target, Client):
            return target, False
        if isinstance(target, str) or hasattr(target, "scheduler_address"):
            try:
                return Client(target, set_as_default=False, timeout=self.timeout_s), True
            except OSError as exc:
                raise ExecutorError(
                    f"could not connect to the Dask scheduler at {target}: {exc}"
                ) from exc
        raise ExecutorConfigError(
            f"DaskExecutor takes a distributed Client, a cluster or an address, got {target!r}"
        )

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """Compute on the target cluster; close only a client opened here."""
        client, own_client = self._connect()
        try:
            yield Session(
                n_workers=_count_workers(client),
                client=client,
                worker_timeout_s=self.worker_timeout_s,
            )
        finally:
            if own_client:
                client.close()
