"""The ``capture`` object handed to operations: metrics, artifacts, figures and logs."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import CaptureError, UnsupportedArtifactError
from .names import check_name
from .serializers import find_serializer, get_serializer, register_serializer

__all__ = ["Capture", "check_name", "register_serializer"]

_NUMBER_TYPES = (int, float, bool)
_LEVELS = ("debug", "info", "warning", "error", "critical")


def _metric_value(name: str, value: Any) -> float | int | bool:
    t = type(value)
    if t is float or t is int or t is bool:
        return value  # type: ignore[no-any-return]
    if isinstance(value, _NUMBER_TYPES):
        return value  # type: ignore[no-any-return]
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        item = value.item()
        if isinstance(item, _NUMBER_TYPES):
            return item  # type: ignore[no-any-return]
    raise TypeError(
        f"metric {name!r} must be a number (int, float, bool or a numpy scalar), got "
        f"{type(value).__module__}.{type(value).__qualname__} {value!r:.60}; store arrays and "
        "other objects with capture.artifact(name, obj)"
    )


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Capture:
    """Collects what one run produces. Handed to the operation as ``capture``.

    Examples
    --------
    >>> c = Capture("r1", None)
    >>> c.metric("accuracy", 0.95)
    >>> c.metrics({"precision": 0.9, "recall": 0.8})
    >>> for step, loss in enumerate([0.5, 0.3]):
    ...     c.metric("loss", loss, step=step)
    >>> sorted(c.scalars)
    ['accuracy', 'loss', 'precision', 'recall']
    """

    __slots__ = ("_artifacts", "_logs", "_store_root", "_steps", "run_id", "scalars")

    def __init__(self, run_id: str, store_root: str | None) -> None:
        self.run_id = run_id
        self._store_root = store_root
        self.scalars: dict[str, Any] = {}
        self._steps: list[list[Any]] | None = None
        self._artifacts: list[dict[str, Any]] | None = None
        self._logs: list[list[Any]] | None = None

    # metrics -----------------------------------------------------------------
    def metric(self, name: str, value: Any, step: int | None = None) -> None:
        """Record a scalar metric; with ``step=`` it becomes one point of a series.

        The run's scalar table shows a stepped metric's last recorded value.
        """
        check_name(name, "metric name")
        v = _metric_value(name, value)
        self.scalars[name] = v
        if step is not None:
            if isinstance(step, bool) or not isinstance(step, int):
                if type(step).__module__ == "numpy":
                    step = int(step)
                else:
                    raise TypeError(f"metric {name!r}: step must be an int, got {step!r}")
            if self._steps is None:
                self._steps = []
            self._steps.append([name, step, float(v), time.time()])

    def metrics(self, values: Mapping[str, Any], step: int | None = None) -> None:
        """Record several metrics at once."""
        if not isinstance(values, Mapping):
            raise TypeError(f"capture.metrics() takes a dict, got {type(values).__name__}")
        for k, v in values.items():
            self.metric(k, v, step=step)

    # artifacts ---------------------------------------------------------------
    def _artifact_dir(self) -> Path:
        if self._store_root is None:
            raise CaptureError("this capture is not attached to a store; artifacts need one")
        d = Path(self._store_root, "artifacts", self.run_id)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _write(self, name: str, obj: Any, fmt: str) -> dict[str, Any]:
        s = get_serializer(fmt)
        if not s.handles(obj) and not s.unsafe and fmt in ("npy", "json", "parquet", "png"):
            raise UnsupportedArtifactError(
                f"artifact {name!r}: format {fmt!r} does not handle "
                f"{type(obj).__qualname__} objects"
            )
        d = self._artifact_dir()
        fname = f"{name}.{s.ext}"
        final = d / fname
        tmp = d / f".tmp-{os.getpid()}-{fname}"
        try:
            s.dump(obj, tmp)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        entry = {
            "name": name,
            "format": s.format,
            "path": f"artifacts/{self.run_id}/{fname}",
            "size": final.stat().st_size,
            "sha256": _sha256_file(final),
        }
        if self._artifacts is None:
            self._artifacts = []
        self._artifacts = [a for a in self._artifacts if a["path"] != entry["path"]]
        self._artifacts.append(entry)
        return entry

    def artifact(self, name: str, obj: Any, format: str | None = None) -> None:
        """Save ``obj`` as a typed file in the store (format chosen by type unless given).

        numpy -> .npy, JSON-like -> .json, pandas/pyarrow -> .parquet, bytes -> .bin,
        str -> .txt, matplotlib figure -> .png; ``format="pickle"`` only when asked.
        """
        check_name(name, "artifact name")
        fmt = format if format is not None else find_serializer(obj).format
        self._write(name, obj, fmt)

    def figure(self, name: str, fig: Any, formats: Iterable[str] = ("png",)) -> None:
        """Save a matplotlib figure (PNG by default; ``formats=("png", "svg")`` for more)."""
        check_name(name, "figure name")
        if not hasattr(fig, "savefig"):
            raise UnsupportedArtifactError(
                f"figure {name!r} must be a matplotlib Figure (has .savefig), got "
                f"{type(fig).__qualname__}; for an Axes pass ax.figure"
            )
        if isinstance(formats, str):
            formats = (formats,)
        for fmt in formats:
            if fmt not in ("png", "svg", "pdf"):
                raise CaptureError(f"figure formats are png, svg and pdf; got {fmt!r}")
            self._write(name, fig, fmt)

    # logs --------------------------------------------------------------------
    def log(self, message: str, level: str = "info") -> None:
        """Add a line to the run's log (``run.logs``)."""
        level = str(level).lower()
        if level not in _LEVELS:
            raise CaptureError(f"log level must be one of {_LEVELS}, got {level!r}")
        if self._logs is None:
            self._logs = []
        self._logs.append([time.time(), level, str(message)])

    # internal ----------------------------------------------------------------
    def _absorb_return(self, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, Mapping):
            self.metrics(value)
            return
        raise TypeError(
            f"the operation returned {type(value).__qualname__}; an operation may return "
            "None or a dict of numbers (recorded as metrics). Use capture.artifact() for "
            "other outputs"
        )

    def _extra(self) -> dict[str, Any] | None:
        if self._steps is None and self._artifacts is None and self._logs is None:
            return None
        extra: dict[str, Any] = {}
        if self._steps is not None:
            extra["steps"] = self._steps
        if self._artifacts is not None:
            extra["artifacts"] = self._artifacts
        if self._logs is not None:
            extra["logs"] = self._logs
        return extra
