"""Where things live inside a store folder (documented in docs/store-format.md).

::

    <store>/
      manifest.json            the experiment: name, version, operation, context, params
      sweeps/<sweep>.json      one per run() call: options, provenance, counts
      records/*.parquet        run records, one row per run attempt
      metrics/*.parquet        stepped metrics in long form (run_id, name, step, value, time)
      journal/*.jsonl          records of partitions still running (or of a crashed driver)
      artifacts/<run_id>/...   artifact files written by the workers
      quarantine/              damaged files moved aside
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Layout:
    """Paths inside one store."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def records(self) -> Path:
        return self.root / "records"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def journal(self) -> Path:
        return self.root / "journal"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def sweeps(self) -> Path:
        return self.root / "sweeps"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    def folders(self) -> list[Path]:
        return [self.records, self.metrics, self.journal, self.artifacts, self.sweeps]
