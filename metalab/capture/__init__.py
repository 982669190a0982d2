"""The ``capture`` object handed to operations: metrics, artifacts, figures and logs."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import CaptureError, CaptureTypeError, UnsupportedArtifactError
from .names import check_name
from .serializers import STRICT_FORMATS, find_serializer, get_serializer, register_serializer

__all__ = ["Capture", "check_name", "register_serializer"]

_NUMBER_TYPES = (int, float, bool)
_LEVELS = ("debug", "info", "warning", "error", "critical")
_FIGURE_FORMATS = ("png", "svg", "pdf")
TMP_PREFIX = ".tmp-"  # as metalab.store.atomic (not imported: it would load pyarrow)


def _metric_value(name: str, value: Any) -> float | int | bool:
    t = type(value)
    if t is float or t is int or t is bool:
        return value  # type: ignore[no-any-return]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if t.__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        item = value.item()
        if isinstance(item, _NUMBER_TYPES):
            return item
    raise CaptureTypeError(
        f"metric {name!r} must be a number (int, float, bool or a numpy scalar), got "
        f"{t.__module__}.{t.__qualname__} {value!r:.60}; store arrays and other objects with "
        "capture.artifact(name, obj)"
    )


def _step_value(name: str, step: Any) -> int:
    if type(step) is int:
        return step
    if not isinstance(step, bool):
        if isinstance(step, int):
            return int(step)
        if type(step).__module__ == "numpy" and getattr(step, "ndim", None) == 0:
            item = step.item()
            if isinstance(item, int) and not isinstance(item, bool):
                return item
    raise CaptureTypeError(
        f"metric {name!r}: step must be an int (e.g. the epoch number), got "
        f"{type(step).__qualname__} {step!r:.60}"
    )


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content (an artifact's checksum); see ``store.checksum``."""
    from ..store.checksum import sha256_file as digest  # the store owns checksums

    return digest(path)


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

    __slots__ = (
        "_artifacts",
        "_ckpt",
        "_logs",
        "_pruned",
        "_seeds",
        "_steps",
        "_store_root",
        "run_id",
        "scalars",
    )

    def __init__(self, run_id: str, store_root: str | None) -> None:
        self.run_id = run_id
        self._store_root = store_root
        self.scalars: dict[str, Any] = {}
        self._steps: list[list[Any]] | None = None
        self._artifacts: list[dict[str, Any]] | None = None
        self._logs: list[list[Any]] | None = None
        self._pruned = False
        # Checkpoint bookkeeping (due, used, requeue), made on first use.
        self._ckpt: dict[str, Any] | None = None
        self._seeds: Any = None  # the run's tracked SeedBundle (its generators are saved)

    # metrics -----------------------------------------------------------------
    def metric(self, name: str, value: Any, step: int | None = None) -> None:
        """Record a scalar metric; with ``step=`` it becomes one point of a series.

        Parameters
        ----------
        name
            A safe name (see :func:`check_name`).
        value
            An ``int``, ``float`` or ``bool``, or a numpy scalar; NaN and infinities are
            kept as they are.
        step
            Make the metric a series: each call adds the point ``(step, value)``, read
            back with ``run.metric_series(name)``. The results table shows the last
            value recorded.

        Raises
        ------
        TypeError
            ``value`` is not a number (store it with :meth:`artifact`) or ``step`` is not
            an int.
        CaptureError
            ``name`` is unsafe.
        """
        check_name(name, "metric name")
        v = _metric_value(name, value)
        if step is not None:
            step = _step_value(name, step)
            if self._steps is None:
                self._steps = []
            self._steps.append([name, step, float(v), time.time_ns() // 1000])
        self.scalars[name] = v

    def metrics(self, values: Mapping[str, Any], step: int | None = None) -> None:
        """Record several metrics at once."""
        if not isinstance(values, Mapping):
            raise CaptureTypeError(f"capture.metrics() takes a dict, got {type(values).__name__}")
        for k, v in values.items():
            self.metric(k, v, step=step)

    def should_stop(self) -> bool:
        """Should this run stop early? Asks the search's pruner (``optimize(pruner=...)``).

        The pruner sees this run's stepped values of the search's metric (record them
        with ``capture.metric(metric, value, step=...)`` first) beside those of the
        runs already finished.  Once it says yes, the run is recorded with status
        ``"pruned"`` (its metrics kept) when the operation returns; ``break`` out of
        the loop then.  Outside a search with a pruner it is always ``False``.

        Examples
        --------
        >>> c = Capture("r1", None)
        >>> c.metric("val_loss", 0.5, step=0)
        >>> c.should_stop()
        False
        """
        if self._pruned:
            return True
        if self._store_root is None:
            return False
        from .pruning import decide

        self._pruned = decide(self._store_root, self.run_id, self._steps)
        return self._pruned

    # checkpoints -------------------------------------------------------------
    def _ck(self) -> dict[str, Any]:
        if self._ckpt is None:
            self._ckpt = {"due": False, "used": False, "requeue": False}
        return self._ckpt

    def _root(self, what: str) -> Path:
        if self._store_root is None:
            raise CaptureError(
                f"this capture is not attached to a store, so it cannot {what}; operations "
                "get a store-backed capture from metalab.run(...)"
            )
        return Path(self._store_root)

    def checkpoint(self, state: Any, keep: int = 1, format: str | None = None) -> None:
        """Store the run's state durably, to continue from it if the run is interrupted.

        Saved with it: the states of the random generators handed out by ``seeds``
        and what was captured so far (metrics, stepped metrics, artifacts, logs), so a
        run continued with :meth:`restore` ends with exactly the record of an
        uninterrupted one.  Called after :meth:`checkpoint_due` said yes, the run is
        recorded ``"requeued"`` when the operation returns and continues elsewhere.

        Parameters
        ----------
        state
            What the run needs to continue: numpy arrays, pandas/pyarrow tables, bytes,
            str, JSON-like dicts and lists, and dicts/lists mixing these (e.g.
            ``{"epoch": 3, "w": array}``).  ``format="pickle"`` saves anything (then
            ``restore(allow_pickle=True)`` loads it).
        keep
            How many of the latest checkpoints to keep (older ones are deleted).
        format
            An artifact format (see :meth:`artifact`); by default chosen by type.

        Raises
        ------
        UnsupportedArtifactError
            No safe format saves ``state`` (a ``TypeError``).
        CaptureError
            The capture has no store, or ``keep`` is not an int >= 1.
        """
        from .checkpoint import write

        root = self._root("save checkpoints")
        ck = self._ck()
        seeds = self._seeds
        write(
            root,
            self.run_id,
            state,
            format=format,
            keep=keep,
            generators=(seeds.generator_states() if seeds is not None else None) or {},
            captured=self._captured(),
        )
        ck["used"] = True
        if ck["due"]:
            ck["requeue"] = True

    def _captured(self) -> dict[str, Any]:
        return {
            "scalars": self.scalars,
            "steps": self._steps,
            "artifacts": self._artifacts,
            "logs": self._logs,
        }

    def restore(self, *, allow_pickle: bool = False) -> Any:
        """The state of this run's latest checkpoint, or ``None`` when it has none.

        Also puts back what the checkpoint saved with it: the random generators of
        ``seeds`` (also those handed out after this call, in the same order as before)
        and the metrics, stepped metrics, artifacts and logs captured up to it, so no
        step is recorded twice.  A damaged checkpoint is moved to ``quarantine/`` with
        a warning and the one before it is used.  Call it before drawing random numbers.

        Examples
        --------
        >>> c = Capture("r1", None)
        >>> c.restore() is None
        True
        """
        if self._store_root is None:
            return None
        from .checkpoint import latest

        got = latest(Path(self._store_root), self.run_id, allow_pickle=allow_pickle)
        ck = self._ck()
        if got is None:
            return None
        if not ck["used"]:  # the first restore of this attempt: put the record back
            if self._seeds is not None:
                self._seeds.restore_generators(got.generators)
            saved = got.captured
            self.scalars = {**(saved.get("scalars") or {}), **self.scalars}
            for attr in ("_steps", "_artifacts", "_logs"):
                before = saved.get(attr.lstrip("_"))
                if before:
                    setattr(self, attr, before + (getattr(self, attr) or []))
        ck["used"] = True
        return got.state

    def checkpoint_due(self, *, margin_s: float | None = None) -> bool:
        """Should the run checkpoint and return now? True once the worker got SIGTERM
        (SLURM's warning before walltime, scancel, preemption) or when the worker's
        ``lifetime`` ends within ``margin_s`` seconds (default 60).

        A run that then calls :meth:`checkpoint` and returns is recorded with status
        ``"requeued"`` (neither failed nor done) and continues from its checkpoint on
        another worker, or on ``resume=True``.

        Examples
        --------
        >>> Capture("r1", None).checkpoint_due()
        False
        """
        from .. import _preemption

        _preemption.note_checkpointing()
        due = _preemption.due(_preemption.DEFAULT_MARGIN_S if margin_s is None else margin_s)
        if due:
            self._ck()["due"] = True
        return due

    # artifacts ---------------------------------------------------------------
    def _artifact_dir(self) -> Path:
        if self._store_root is None:
            raise CaptureError(
                "this capture is not attached to a store, so it cannot save artifacts; "
                "operations get a store-backed capture from metalab.run(...)"
            )
        from ..store.paths import run_artifact_dir

        check_name(self.run_id, "run id")
        return run_artifact_dir(Path(self._store_root), self.run_id)  # a link there: refused

    def _forget(self, name: str) -> None:
        """Drop earlier artifacts of this name (a name saved again replaces the old one)."""
        if not self._artifacts:
            return
        keep = []
        for a in self._artifacts:
            if a["name"] != name:
                keep.append(a)
            elif self._store_root is not None:
                with contextlib.suppress(OSError):
                    Path(self._store_root, a["path"]).unlink()
        self._artifacts = keep

    def _write(self, name: str, obj: Any, fmt: str) -> dict[str, Any]:
        s = get_serializer(fmt)
        if fmt in STRICT_FORMATS and not s.handles(obj):
            raise UnsupportedArtifactError(
                f"artifact {name!r}: format {fmt!r} cannot save "
                f"{type(obj).__module__}.{type(obj).__qualname__} objects; leave format= out "
                "to choose by type, or use format='pickle'"
            )
        d = self._artifact_dir()
        fname = f"{name}.{s.ext}"
        final = d / fname
        # Short unique prefix: a 200-byte name + 32-byte ext still fits in 255 bytes.
        tmp = d / f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{fname}"
        try:
            s.dump(obj, tmp)
            if not tmp.is_file():
                raise CaptureError(
                    f"artifact {name!r}: the {fmt!r} serializer did not write the file it was "
                    f"given ({tmp.name}); its dump(obj, path) must write exactly to path"
                )
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        entry = {
            "name": name,
            "format": s.format,
            "path": f"artifacts/{self.run_id}/{fname}",
            "size": final.stat().st_size,
            "sha256": sha256_file(final),
        }
        if self._artifacts is None:
            self._artifacts = []
        self._artifacts.append(entry)
        return entry

    def artifact(self, name: str, obj: Any, format: str | None = None) -> None:
        """Save ``obj`` as a typed file in the store, next to the run's record.

        The format is chosen by type unless given: numpy -> ``.npy``, JSON-like ->
        ``.json``, pandas/pyarrow -> ``.parquet``, bytes -> ``.bin``, str -> ``.txt``,
        matplotlib figure -> ``.png``. ``format="pickle"`` saves anything, but loading
        it then needs ``allow_pickle=True``. Saving a name again replaces it.

        Raises
        ------
        CaptureError
            ``name`` is unsafe.
        UnsupportedArtifactError
            No format handles ``obj`` (a ``TypeError``), or ``format`` is unknown.
        """
        check_name(name, "artifact name")
        s = get_serializer(format) if format is not None else find_serializer(obj)
        self._forget(name)
        self._write(name, obj, s.format)

    def figure(self, name: str, fig: Any, formats: Iterable[str] = ("png",)) -> None:
        """Save a matplotlib figure (PNG by default; ``formats=("png", "svg")`` for more).

        Each format becomes one artifact entry of the same name; ``run.artifact(name)``
        loads the first, ``run.artifact(name, format="svg")`` a given one.
        """
        check_name(name, "figure name")
        if not hasattr(fig, "savefig"):
            raise UnsupportedArtifactError(
                f"figure {name!r} must be a matplotlib Figure (has .savefig), got "
                f"{type(fig).__qualname__}; for an Axes pass ax.figure"
            )
        formats = (formats,) if isinstance(formats, str) else tuple(formats)
        if not formats:
            raise CaptureError(f"figure {name!r}: formats is empty; use e.g. formats=('png',)")
        for fmt in formats:
            if fmt not in _FIGURE_FORMATS:
                raise CaptureError(
                    f"figure {name!r}: formats are {', '.join(_FIGURE_FORMATS)}; got {fmt!r}"
                )
        self._forget(name)
        for fmt in dict.fromkeys(formats):
            self._write(name, fig, fmt)

    @property
    def manifest(self) -> list[dict[str, Any]]:
        """The artifacts saved so far: name, format, path, size and sha256 of each."""
        return [dict(a) for a in self._artifacts or ()]

    # logs --------------------------------------------------------------------
    def log(self, message: str, level: str = "info") -> None:
        """Add a line to the run's log, read back as ``run.logs``.

        ``level`` is one of ``"debug"``, ``"info"``, ``"warning"``, ``"error"``,
        ``"critical"``.
        """
        lv = str(level).lower()
        if lv not in _LEVELS:
            raise CaptureError(f"log level must be one of {', '.join(_LEVELS)}; got {level!r}")
        if self._logs is None:
            self._logs = []
        self._logs.append([time.time(), lv, str(message)])


# For the code that runs operations (metalab.sweep), not for operations: functions rather
# than methods keep them out of the ``capture`` object that users see.


def record_return(cap: Capture, value: Any) -> None:
    """Record an operation's return value: ``None``, or a dict of numbers as metrics.

    Raises
    ------
    CaptureTypeError
        ``value`` is anything else.
    """
    if value is None:
        return
    if isinstance(value, Mapping):
        cap.metrics(value)
        return
    raise CaptureTypeError(
        f"the operation returned {type(value).__qualname__}; an operation may return "
        "None or a dict of numbers (recorded as metrics). Use capture.artifact() for "
        "other outputs"
    )


def was_pruned(cap: Capture) -> bool:
    """Did the run's ``capture.should_stop()`` say yes (its status is then "pruned")?"""
    return cap._pruned


def attach_seeds(cap: Capture, seeds: Any) -> None:
    """Give the capture the run's (tracked) seeds, whose generators checkpoints save."""
    cap._seeds = seeds


def is_plain(cap: Capture) -> bool:
    """Neither checkpointed nor pruned: a returning run is then simply a success."""
    return cap._ckpt is None and not cap._pruned


def was_requeued(cap: Capture) -> bool:
    """Did the run checkpoint after ``checkpoint_due()`` said yes (status "requeued")?"""
    return cap._ckpt is not None and bool(cap._ckpt["requeue"])


def used_checkpoints(cap: Capture) -> bool:
    """Did the run write or restore a checkpoint (its checkpoints go when it succeeds)?"""
    return cap._ckpt is not None and bool(cap._ckpt["used"])


def run_extra(cap: Capture) -> dict[str, Any] | None:
    """The run record's ``extra`` field: stepped metrics, artifacts and logs, or None."""
    if cap._steps is None and cap._artifacts is None and cap._logs is None:
        return None
    extra: dict[str, Any] = {}
    if cap._steps is not None:
        extra["steps"] = cap._steps
    if cap._artifacts is not None:
        extra["artifacts"] = cap._artifacts
    if cap._logs is not None:
        extra["logs"] = cap._logs
    return extra
