"""A cache of an experiment's planned run ids, so that resuming a large sweep does not
hash every run again.

Computing the run ids of a plan costs a sha256 per run (~2 µs each: seconds for a
million runs), while reading them back from a Parquet column costs ~0.1 µs each. So the
first sweep of a large experiment writes its run-id column, in plan order, to::

    <store>/plans/<key>-<random>.parquet

``key`` is the sha256 of everything the run ids depend on: the run-identity prefix
(experiment name and version, operation name and version, context fingerprint), a
fingerprint of the params source (for a grid, of its axes: O(axes), not O(runs)), the
seed plan and :data:`FORMAT`. A later plan of the same experiment reads the file instead
of hashing, but only after checking it:

* the footer's CRC-32 and every page's CRC-32 (a damaged file fails them);
* the key and the row count written in its footer against this experiment's;
* a sample of rows (the first, the last and :data:`SAMPLE` random ones) recomputed
  from the params source: a file built by a different recipe or for a different plan
  fails it.

A file that fails any check is deleted and the plan is computed as before (and cached
again). Files are written once under a unique name (temp file + rename), so concurrent
drivers never see a partial file and any valid copy will do; compaction never touches
``plans/``, and the cached ids do not depend on the records.
"""

from __future__ import annotations

import hashlib
import os
import random
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._hashing import canonical_json, run_id_from_parts

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from ..experiment import Experiment
    from ..params.sources import ParamSource
    from .layout import Layout

#: Version of the cache's recipe: part of every key (bump it when the format changes).
FORMAT = 1
#: Plans smaller than this are not cached: hashing them costs less than a file write.
MIN_RUNS = 20_000
#: Random rows recomputed when a cached plan is read (besides the first and the last).
SAMPLE = 16
#: Cached plans kept per store (the most recently written; older ones are deleted).
KEEP = 8
KEY_ENTRY = b"metalab.plan_key"
ROWS_ENTRY = b"metalab.plan_rows"


def folder(layout: Layout) -> Path:
    """``<store>/plans/``."""
    return layout.root / "plans"


# ----------------------------------------------------------------------- fingerprints
def source_document(source: ParamSource) -> Any:
    """What determines the configurations of a built-in params source, in order; None
    for other sources (adaptive ones), whose plans are not cached."""
    from ..params.sources import Concat, Grid, Manual, Product, Random

    if isinstance(source, Grid):
        return {"grid": [[k, v] for k, v in source.axes.items()]}
    if isinstance(source, Manual):
        return {"manual": source.configs}
    if isinstance(source, Random):
        return {"random": source.materialize()}
    if isinstance(source, (Concat, Product)):
        a, b = source_document(source.a), source_document(source.b)
        if a is None or b is None:
            return None
        return {type(source).__name__.lower(): [a, b]}
    return None


def plan_key(exp: Experiment) -> str | None:
    """The cache key of ``exp``'s plan (see the module docstring), or None if uncached."""
    doc = source_document(exp.params)
    if doc is None:
        return None
    full = {
        "format": FORMAT,
        "prefix": exp.run_id_prefix,
        "params": doc,
        "seeds": [exp.seeds.base, exp.seeds.replicates],
    }
    return hashlib.sha256(canonical_json(full).encode()).hexdigest()[:40]


def config_at(source: ParamSource, i: int) -> dict[str, Any]:
    """The ``i``-th configuration of a built-in source, without iterating to it."""
    from ..params.sources import Concat, Grid, Manual, Product, Random

    if isinstance(source, Grid):
        out: dict[str, Any] = {}
        for key, values in reversed(source.axes.items()):  # the last axis varies fastest
            i, j = divmod(i, len(values))
            out[key] = values[j]
        return out
    if isinstance(source, Manual):
        return dict(source.configs[i])
    if isinstance(source, Random):
        return dict(source.materialize()[i])
    if isinstance(source, Concat):
        n = len(source.a)
        return config_at(source.a, i) if i < n else config_at(source.b, i - n)
    if isinstance(source, Product):
        q, r = divmod(i, len(source.b))
        return {**config_at(source.a, q), **config_at(source.b, r)}
    raise TypeError(f"no random access into {type(source).__name__}")  # pragma: no cover


def params_json_at(source: ParamSource, i: int) -> str:
    """Canonical JSON of the ``i``-th configuration (what the run id hashes)."""
    return canonical_json(config_at(source, i))


def run_id_at(exp: Experiment, position: int) -> str:
    """The run id at ``position`` of ``exp``'s plan (configuration-major, then replicate)."""
    config, replicate = divmod(position, exp.seeds.replicates)
    params = params_json_at(exp.params, config)
    return run_id_from_parts(exp.run_id_prefix, params, exp.seeds.base, replicate)


# ------------------------------------------------------------------------ read / write
def _check(exp: Experiment, key: str, table: pa.Table) -> str | None:
    """Why ``table`` is not ``exp``'s plan, or None when every check passes."""
    meta = table.schema.metadata or {}
    n = len(exp)
    if meta.get(KEY_ENTRY) != key.encode():
        return "another plan's key"
    if meta.get(ROWS_ENTRY) != str(n).encode() or table.num_rows != n:
        return f"{table.num_rows} rows, the plan has {n}"
    if table.column_names != ["run_id"] or table.column(0).null_count:
        return "not a column of run ids"
    ids = table.column(0)
    picks = {0, n - 1, *random.sample(range(n), min(SAMPLE, n))}
    for p in sorted(picks):
        if ids[p].as_py() != run_id_at(exp, p):
            return f"row {p} is not the run id recomputed from the params"
    return None


def load(layout: Layout, exp: Experiment) -> pa.Array | None:
    """The cached run ids of ``exp``'s plan (checked), or None when there is no valid copy.

    Copies that fail a check are deleted (the caller computes the plan and saves it).
    """
    from .reader import DamagedFile, read_parquet_file

    if len(exp) < MIN_RUNS:
        return None
    key = plan_key(exp)
    if key is None:
        return None
    try:
        names = sorted(e.name for e in os.scandir(folder(layout)) if e.name.startswith(key))
    except (FileNotFoundError, NotADirectoryError):
        return None
    for name in names:
        path = folder(layout) / name
        try:
            table = read_parquet_file(path, None, None)
        except DamagedFile:
            table = None
        except OSError:  # deleted by another driver meanwhile, or unreadable: skip it
            continue
        if table is not None and _check(exp, key, table) is None:
            return table.column(0).combine_chunks()
        _remove(path)  # damaged, or not this plan: never used, rebuilt by the caller
    return None


def save(layout: Layout, exp: Experiment, run_ids: pa.Array) -> Path | None:
    """Write ``run_ids`` (``exp``'s whole plan, in order, all distinct) as a cached plan.

    Returns the new file, or None when the plan is not cached (small, an adaptive source,
    or a read-only store: the cache is an optimization, never a reason to fail a sweep).
    """
    if len(run_ids) < MIN_RUNS or len(run_ids) != len(exp):
        return None
    key = plan_key(exp)
    if key is None:
        return None
    path = folder(layout) / f"{key}-{uuid.uuid4().hex[:12]}.parquet"
    try:
        path.parent.mkdir(exist_ok=True)
        _write(path, key, run_ids)
    except OSError:
        return None
    _prune(layout, keep=path)
    return path


def _write(path: Path, key: str, run_ids: pa.Array) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .atomic import atomic_write
    from .checksum import parquet_key_value, seal_parquet_footer

    # In the schema's metadata (what a reader's table carries), as records keep theirs.
    meta = {KEY_ENTRY: key.encode(), ROWS_ENTRY: str(len(run_ids)).encode()}
    table = pa.table({"run_id": run_ids}).replace_schema_metadata(meta)

    def write(tmp: Path) -> None:
        # Hex ids do not compress: plain encoding, no codec, page checksums.
        with pq.ParquetWriter(
            tmp,
            table.schema,
            use_dictionary=False,
            compression="none",
            write_statistics=False,
            write_page_checksum=True,
        ) as writer:
            writer.write_table(table, row_group_size=1 << 20)
            writer.add_key_value_metadata(parquet_key_value())
        seal_parquet_footer(tmp)

    # No fsync: a copy torn by a power cut fails its checksums and is rebuilt.
    atomic_write(path, write, fsync=False)


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _prune(layout: Layout, keep: Path) -> None:
    """Delete other copies of ``keep``'s plan, all but the :data:`KEEP` newest plans, and
    temp files that killed writers left (older than an hour)."""
    import time

    from .atomic import TMP_PREFIX

    try:
        entries = [(e, e.stat().st_mtime_ns) for e in os.scandir(folder(layout))]
    except OSError:
        return
    kept = {keep.name.split("-", 1)[0]}
    for e, mtime in sorted(entries, key=lambda x: x[1], reverse=True):
        if e.name.startswith(TMP_PREFIX):
            if mtime < (time.time() - 3600) * 1e9:
                _remove(Path(e.path))
            continue
        if e.name == keep.name or not e.name.endswith(".parquet"):
            continue
        k = e.name.split("-", 1)[0]
        if k in kept or len(kept) >= KEEP:  # a second copy, or an old plan
            _remove(Path(e.path))
        else:
            kept.add(k)


def id_words(arr: pa.Array) -> np.ndarray | None:
    """The run ids' bytes as an ``(n, 4)`` array of 64-bit words (no copy), or None when
    some value is null or not 32 bytes long (then only the strings can be compared)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if arr.null_count or not pa.types.is_string(arr.type):
        return None
    if len(arr) and pc.min_max(pc.binary_length(arr)).as_py() != {"min": 32, "max": 32}:
        return None
    start = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset] if len(arr) else 0
    data = np.frombuffer(arr.buffers()[2] or b"", dtype=np.uint8)[start : start + 32 * len(arr)]
    return data.view(np.uint64).reshape(-1, 4)


def id_keys(words: np.ndarray) -> np.ndarray:
    """A 64-bit key per run id from its :func:`id_words` (equal ids, equal keys).

    Two words hold 16 hex digits, 64 bits of the id's entropy: keys of different ids
    rarely collide, and every match on keys is confirmed on all four words.
    """
    import numpy as np

    return words[:, 0] ^ (words[:, 1] * np.uint64(0x9E3779B97F4A7C15))
