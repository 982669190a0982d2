"""``Run``: one run's record, with its params, metrics, error, logs and artifacts."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ResultsError
from ..store.records import (
    ARTIFACTS,
    ATTEMPT,
    DURATION_S,
    ERROR_MESSAGE,
    ERROR_TYPE,
    LOGS,
    METRIC_PREFIX,
    PARAMS,
    REPLICATE,
    RUN_ID,
    SEED,
    STATUS,
    STEP,
    STEP_NAME,
    STEP_TIME,
    STEP_VALUE,
    SUCCESS,
    SWEEP,
    TRACEBACK,
)

if TYPE_CHECKING:
    import pandas as pd

    from ..store import Store

__all__ = ["Run"]


class Run:
    """One run's record: params, seed, status, metrics, error, logs and artifacts.

    Get one from a :class:`~metalab.results.Results` by position or run id
    (``results[0]``, ``results["3f9a"]``) or by iterating over it.
    """

    def __init__(self, row: dict[str, Any], store: Store) -> None:
        self._row = row
        self._store = store

    @property
    def run_id(self) -> str:
        """The run's id: a content hash of what defines the run (docs/concepts.md)."""
        return str(self._row[RUN_ID])

    @property
    def params(self) -> dict[str, Any]:
        """The run's parameters (nested dicts as given)."""
        return dict(json.loads(self._row[PARAMS]))

    @property
    def seed(self) -> int:
        """The root seed of the run."""
        return int(self._row[SEED])

    @property
    def replicate(self) -> int:
        """The replicate number (0, 1, ...) among runs with the same params."""
        return int(self._row[REPLICATE])

    @property
    def status(self) -> str:
        """``"success"``, ``"failed"`` or ``"timeout"``."""
        return str(self._row[STATUS])

    @property
    def attempt(self) -> int:
        """1 for the first sweep that ran this run in its store, then 2, 3, ..."""
        return int(self._row[ATTEMPT])

    @property
    def duration_s(self) -> float:
        """Wall-clock seconds the run took."""
        return float(self._row[DURATION_S])

    @property
    def record(self) -> dict[str, Any]:
        """The raw record (every stored column)."""
        return dict(self._row)

    @property
    def metrics(self) -> dict[str, Any]:
        """The run's scalar metrics (name -> value)."""
        return {
            k[len(METRIC_PREFIX) :]: v
            for k, v in self._row.items()
            if k.startswith(METRIC_PREFIX) and v is not None
        }

    @property
    def error(self) -> dict[str, str] | None:
        """``{"type", "message", "traceback"}`` of a failed run, else None."""
        if not self._row.get(ERROR_TYPE):
            return None
        return {
            "type": self._row.get(ERROR_TYPE) or "",
            "message": self._row.get(ERROR_MESSAGE) or "",
            "traceback": self._row.get(TRACEBACK) or "",
        }

    @property
    def logs(self) -> str:
        """The run's log: one line per ``capture.log`` call (and captured output)."""
        import datetime as _dt

        raw = self._row.get(LOGS)
        if not raw:
            return ""
        lines = []
        for t, level, msg in json.loads(raw):
            ts = _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%H:%M:%S.%f")[:-3]
            lines.append(f"{ts} {level.upper():<7} {msg}")
        return "\n".join(lines)

    @property
    def artifacts(self) -> list[dict[str, Any]]:
        """The artifact manifest: name, format, path, size, sha256 of each artifact."""
        raw = self._row.get(ARTIFACTS)
        return list(json.loads(raw)) if raw else []

    # artifacts ------------------------------------------------------------------------
    def _artifact_entry(self, name: str, format: str | None = None) -> dict[str, Any]:
        entries = [a for a in self.artifacts if a["name"] == name]
        if entries and format is not None:
            chosen = [a for a in entries if a["format"] == format]
            if not chosen:
                have = [a["format"] for a in entries]
                raise ResultsError(
                    f"run {self.run_id[:8]}: artifact {name!r} has no format "
                    f"{format!r}; it was saved as {have}",
                    name=format,
                    choices=have,
                )
            entries = chosen
        if not entries:
            known = sorted({a["name"] for a in self.artifacts})
            raise ResultsError(
                f"run {self.run_id[:8]} has no artifact {name!r}; it has {known}",
                name=name,
                choices=known,
            )
        return entries[0]

    def _entry_path(self, entry: dict[str, Any]) -> Path:
        from ..store.paths import artifact_file

        store = self._store
        where = f"the record of run {self.run_id[:8]} in {store.location}"
        path = artifact_file(store.root, self.run_id, entry.get("path"), where)
        if store.mirror is not None:  # a remote store: fetched when first asked for
            store.mirror.fetch(path.relative_to(store.root).as_posix())
        return path

    def artifact_path(self, name: str, *, format: str | None = None) -> Path:
        """The file of an artifact inside the store (the first format unless ``format=``)."""
        return self._entry_path(self._artifact_entry(name, format))

    def artifact(self, name: str, *, format: str | None = None, allow_pickle: bool = False) -> Any:
        """Load an artifact, checking its sha256 first.

        Parameters
        ----------
        name
            The name given to ``capture.artifact`` or ``capture.figure``.
        format
            Which file of a figure saved in several formats (default: the first).
        allow_pickle
            Load a ``format="pickle"`` artifact (unpickling can run code from the file).

        Raises
        ------
        KeyError
            The run has no such artifact (a :class:`~metalab.errors.ResultsError`).
        ArtifactIntegrityError
            The file does not match the checksum recorded when it was written.
        UnsafePickleError
            It is a pickle and ``allow_pickle`` is False.
        """
        from ..capture.serializers import load_artifact
        from ..store.verify import verify_artifact

        entry = self._artifact_entry(name, format)
        path = self._entry_path(entry)
        what = f"artifact {name!r} of run {self.run_id[:8]}"
        verify_artifact(
            self._store.layout, path, entry["sha256"], what, run_id=self.run_id, name=name
        )
        return load_artifact(entry["format"], path, allow_pickle=allow_pickle)

    # stepped metrics -----------------------------------------------------------------
    def metric_series(self, name: str) -> pd.Series:
        """A stepped metric of this run as a pandas Series indexed by step.

        Empty when the run recorded ``name`` without steps (or failed before any);
        :class:`~metalab.errors.ResultsError` when a successful run has no such metric.
        """
        import pandas as pd
        import pyarrow.dataset as ds

        from ..store import read_steps

        expr = (ds.field(RUN_ID) == self.run_id) & (ds.field(STEP_NAME) == name)
        t = read_steps(self._store.layout, filter=expr).to_pandas()
        sweep = self._row.get(SWEEP)
        if sweep is not None and len(t):
            t = t[t[SWEEP] == sweep]
        if t.empty and self.status == SUCCESS and name not in self.metrics:
            raise ResultsError(
                f"run {self.run_id[:8]} has no metric {name!r}; its metrics are "
                f"{sorted(self.metrics)}"
            )
        # A step can sit in two files for a moment (journal being folded into Parquet).
        t = t.drop_duplicates(subset=[STEP, STEP_TIME]).sort_values(
            [STEP, STEP_TIME], kind="stable"
        )
        return pd.Series(
            t[STEP_VALUE].to_numpy(dtype="float64"),
            index=pd.Index(t[STEP].to_numpy(dtype="int64"), name=STEP),
            name=name,
        )

    # reprs --------------------------------------------------------------------------
    def __repr__(self) -> str:
        m = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in list(self.metrics.items())[:4]
        )
        return f"<Run {self.run_id[:8]} {self.status} params={self.params} {m}>"

    def _repr_html_(self) -> str:
        head = {
            RUN_ID: self.run_id,
            STATUS: self.status,
            REPLICATE: self.replicate,
            SEED: self.seed,
            ATTEMPT: self.attempt,
            DURATION_S: f"{self.duration_s:.4g}",
        }
        parts = [
            f"<p><b>Run</b> {html.escape(self.run_id[:8])} ({html.escape(self.status)})</p><table>",
            _html_rows(head),
        ]
        sections = [("params", _flat_params(self.params)), ("metrics", self.metrics)]
        err = self.error
        if err:
            sections.append(("error", {err["type"]: err["message"]}))
        files = {a["name"]: f"{a['format']}, {a.get('size', '?')} bytes" for a in self.artifacts}
        sections.append(("artifacts", files))
        for title, items in sections:
            if items:
                parts.append(f"<tr><td colspan='2'><b>{title}</b></td></tr>" + _html_rows(items))
        parts.append("</table>")
        return "".join(parts)


def _html_rows(items: dict[str, Any]) -> str:
    return "".join(
        f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
        f"<td style='text-align:left'>{html.escape(_short(v))}</td></tr>"
        for k, v in items.items()
    )


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    text = str(v)
    return text if len(text) <= 200 else text[:197] + "..."


def _flat_params(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, dict) and v:
            out.update(_flat_params(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
