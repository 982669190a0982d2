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
        """``manifest.json``: the experiment the store belongs to."""
        return self.root / "manifest.json"

    @property
    def records(self) -> Path:
        """``records/``: run records as Parquet files."""
        return self.root / "records"

    @property
    def metrics(self) -> Path:
        """``metrics/``: stepped metrics as Parquet files."""
        return self.root / "metrics"

    @property
    def journal(self) -> Path:
        """``journal/``: journals of partitions still running (or crashed)."""
        return self.root / "journal"

    @property
    def artifacts(self) -> Path:
        """``artifacts/<run_id>/``: the files runs saved."""
        return self.root / "artifacts"

    @property
    def sweeps(self) -> Path:
        """``sweeps/``: one JSON file per ``run()`` call."""
        return self.root / "sweeps"

    @property
    def quarantine(self) -> Path:
        """``quarantine/``: damaged files moved aside."""
        return self.root / "quarantine"

    def folders(self) -> list[Path]:
        """The folders a new store creates (quarantine is made when first needed)."""
        return [self.records, self.metrics, self.journal, self.artifacts, self.sweeps]
