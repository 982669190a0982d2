"""Executors choose the Dask scheduler a sweep runs on; the sweep code path is the same."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class Session:
    """A scheduler ready to compute: either a local ``get`` function or a distributed client."""

    n_workers: int
    get: Any = None  # dask scheduler get function (in-process executors)
    num_workers: int | None = None  # for the threaded scheduler
    client: Any = None  # distributed.Client (cluster executors)
    owns_cluster: bool = False
    #: Fail when no usable worker is connected for this long (None: wait forever).
    worker_timeout_s: float | None = None
    #: Returns a text explaining why workers are missing (batch queue state, worker logs).
    diagnose: Callable[[], str] | None = None

    @property
    def distributed(self) -> bool:
        return self.client is not None

    @property
    def dashboard_link(self) -> str | None:
        if self.client is None:
            return None
        try:
            return str(self.client.dashboard_link)
        except Exception:
            return None


class Executor:
    """Base class. Subclasses implement :meth:`session` (a context manager)."""

    #: True when runs execute in the driver process (timeouts then use a child process).
    in_process: bool = False

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"
