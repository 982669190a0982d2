"""The on-disk store: Parquet run records, journals, artifacts (docs/store-format.md)."""

from .layout import SCHEMA_VERSION, Layout
from .reader import DamagedFileWarning, read_records, read_steps
from .store import Store

__all__ = ["SCHEMA_VERSION", "DamagedFileWarning", "Layout", "Store", "read_records", "read_steps"]
