"""The Store: a folder of Parquet records, journals and artifacts, safe for concurrent use."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import StoreError
from .atomic import TMP_PREFIX, atomic_write_text, tmp_path_for
from .checksum import parquet_footer_damage, seal_json
from .files import (
    COMPACT_MAX_ROWS as COMPACT_MAX_ROWS,
)
from .files import (
    ROW_GROUP_SIZE as ROW_GROUP_SIZE,
)
from .files import (
    new_file_name as new_file_name,
)
from .files import (
    write_parquet as write_parquet,
)
from .files import (
    write_partition,
)
from .journal import list_journals
from .layout import SCHEMA_VERSION, Layout
from .paths import (
    cannot_read,
    check_name,
    check_store_folders,
    name_problem,
    plain_files,
    quarantine,
)
from .reader import (
    parquet_files,
    quarantine_parquet,
    read_journal,
    read_records,
    retire_journal,
)
from .urls import is_url, local_path
from .verify import read_manifest_file, read_sweep_files, totals_for_sweep_file

if TYPE_CHECKING:
    from .mirror import Mirror

COMPACT_AT_FILES = 16
#: A store on a disk with less free space than this fails at start (errno ENOSPC).
MIN_FREE_BYTES = 1 << 20
#: Temp files and done markers older than this are left by killed writers: cleaned.
TEMP_MAX_AGE_S = 3600.0


class Store:
    """One store folder. Create or open it with :meth:`Store.open`."""

    def __init__(self, root: Path, mirror: Mirror | None = None) -> None:
        self.root = root
        self.layout = Layout(root)
        #: A store on a remote filesystem: ``root`` is this process's local mirror of it.
        self.mirror = mirror

    @property
    def location(self) -> str:
        """Where the store lives, as shown to users: its folder, or its URL."""
        return self.mirror.remote.url if self.mirror is not None else str(self.root)

    def sync(self) -> None:
        """A remote store: upload what changed here (a local store: nothing to do)."""
        if self.mirror is not None:
            self.mirror.push()

    def refresh(self) -> None:
        """A remote store: download what other processes wrote (local: nothing to do)."""
        if self.mirror is not None:
            self.mirror.pull()

    # opening -----------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | Store,
        *,
        create: bool = False,
        storage_options: dict[str, Any] | None = None,
        reading: bool = False,
    ) -> Store:
        """Open a store, creating its folders when ``create`` (validates the path first).

        The root is resolved once (a store reached through a link is fine); every path
        inside is then taken relative to that real root, and the store's own folders
        (``records/``, ``journal/``...) must not be links (:class:`StoreError`).  A URL
        (``s3://bucket/prefix``) opens a remote store through fsspec (see
        :mod:`metalab.store.mirror`); ``storage_options`` go to its filesystem, and
        ``reading`` (opened for results) leaves its records in the bucket: results read
        them there, fetching only the row groups a filter may need.
        """
        if isinstance(path, Store):
            return path
        if is_url(path):  # "s3://b/x" must never become a local folder "s3:"
            return cls._open_remote(os.fspath(path), create, storage_options, reading)
        path = local_path(path)
        if not str(os.fspath(path)).strip():  # "" would resolve to the current folder
            raise StoreError(
                errno.EINVAL,
                f"store path {os.fspath(path)!r} is empty or blank; pass a folder such as "
                "store='runs/my_experiment', or leave store= out for ./runs/<experiment name>",
                str(os.fspath(path)),
            )
        root = Path(os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(path)))))
        if root.exists() and not root.is_dir():
            raise StoreError(
                errno.ENOTDIR,
                f"store path {root} is a file, not a folder; pass a folder path such as "
                f"store='{root.parent / 'runs' / root.stem}'",
                str(root),
            )
        store = cls(root)
        if root.is_dir():
            check_store_folders(root)
        if create:
            store._create()
        elif not root.is_dir():
            raise StoreError(
                errno.ENOENT,
                f"no metalab store at {root}; check the path (stores are made by metalab.run)",
                str(root),
            )
        elif not os.path.lexists(store.layout.manifest) and not store.layout.records.exists():
            raise StoreError(
                errno.ENOENT,
                f"{root} is a folder but not a metalab store (no manifest.json or records/)",
                str(root),
            )
        return store

    @classmethod
    def _open_remote(
        cls, url: str, create: bool, storage_options: dict[str, Any] | None, reading: bool
    ) -> Store:
        from .mirror import Mirror, new_cache_dir, removed_with
        from .remote import Remote

        remote = Remote.open(url, storage_options=storage_options)
        remote.check()  # a missing bucket or bad credentials fail here, naming the URL
        local = new_cache_dir("metalab-remote-")
        mirror = Mirror(remote, local)
        store = cls(local, mirror)
        removed_with(store, local)
        if reading:
            mirror.lazy = ("artifacts/", "records/", "plans/")
        mirror.pull()
        if create:
            for d in store.layout.folders():
                d.mkdir(parents=True, exist_ok=True)
        elif not store.layout.manifest.exists() and not remote.listing("records/"):
            raise StoreError(
                errno.ENOENT,
                f"no metalab store at {remote.url}; check the URL (stores are made by metalab.run)",
                remote.url,
            )
        return store

    def _create(self) -> None:
        try:
            for d in self.layout.folders():
                d.mkdir(parents=True, exist_ok=True)
            check_store_folders(self.root)  # a link made meanwhile is refused too
            probe = self.root / f"{TMP_PREFIX}probe-{uuid.uuid4().hex[:8]}"
            with open(probe, "xb") as f:
                f.write(b"metalab write probe\n" * 64)
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
            vfs = os.statvfs(self.root)
            if vfs.f_bavail * vfs.f_frsize < MIN_FREE_BYTES:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.root))
        except StoreError:
            raise
        except OSError as exc:
            code = exc.errno or errno.EIO
            raise StoreError(
                code,
                f"cannot write to the store at {self.root}: {os.strerror(code)} "
                f"(errno {errno.errorcode.get(code, code)}). Check permissions and free space, "
                "or pass another path with store=...",
                str(self.root),
            ) from exc

    # manifest ------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any]:
        """The verified manifest ({} if none); StoreError naming the repair if damaged."""
        return read_manifest_file(self.layout)

    def ensure_manifest(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Write the manifest if missing; check that an existing one is the same experiment.

        Creation is exclusive: of two experiments racing on a new store exactly one
        writes its manifest, and the other gets :class:`StoreError`.
        """
        existing = self.read_manifest()
        if not existing:
            new = {"metalab_store": SCHEMA_VERSION, "created": time.time(), **manifest}
            if create_exclusive(self.layout.manifest, _manifest_text(seal_json(new))):
                return new
            existing = self.read_manifest()  # another driver created it first
        if existing.get("experiment") != manifest["experiment"]:
            raise StoreError(
                errno.EEXIST,
                f"the store at {self.root} belongs to experiment "
                f"{existing.get('experiment')!r}, not {manifest['experiment']!r}; pass "
                f"store='./runs/{manifest['experiment']}' (or another new folder)",
                str(self.root),
            )
        return existing

    def note_definition(
        self, manifest: dict[str, Any], *, sweep: str, started: float, planned: int
    ) -> dict[str, Any]:
        """Make the manifest describe ``manifest`` (the experiment of ``sweep``) and count
        the sweep in its history of definitions (see :mod:`metalab.store.manifest`)."""
        from .manifest import note_definition

        return note_definition(self.layout, manifest, sweep=sweep, started=started, planned=planned)

    def write_sweep(self, sweep: str, info: dict[str, Any]) -> None:
        """Write (or replace) ``sweeps/<sweep>.json`` atomically, sealed with a checksum."""
        check_name(sweep, "sweep id", self.layout.sweeps)
        if "ended" in info:  # what the store holds now: a reader finding less will say so
            info = {**info, **totals_for_sweep_file(self.layout)}
        atomic_write_text(self.layout.sweeps / f"{sweep}.json", _manifest_text(seal_json(info)))

    def read_sweeps(self) -> list[dict[str, Any]]:
        """Verified sweep files, oldest first (damaged ones quarantined with a warning)."""
        return read_sweep_files(self.layout)

    # reading ---------------------------------------------------------------------
    def records(self, columns: list[str] | None = None, filter: Any = None) -> pa.Table:
        """Current records (one per run id), optionally a subset of columns / rows."""
        return read_records(self.layout, columns=columns, filter=filter)

    def status_table(self, planned: pa.Array | None = None) -> pa.Table:
        """run_id, status, attempt, artifacts of every current record (for resume planning;
        ``planned``: the plan's distinct run ids, see :func:`read_records`)."""
        return read_records(
            self.layout, columns=["run_id", "status", "attempt", "artifacts"], distinct=planned
        )

    # maintenance -------------------------------------------------------------------
    def recover_journals(self, *, sweep: str | None = None, dead_only: bool = True) -> int:
        """Fold journals of dead writers into Parquet; returns how many runs were folded.

        A journal whose header names a sweep that is not a plain name is quarantined,
        never used to build a file name.
        """
        folded = 0
        prefix = f"{sweep}-" if sweep else ""
        for path in list_journals(self.layout.journal, prefix):
            j = read_journal(self.layout, path)  # a damaged header: quarantined
            if j is None or (dead_only and j.writer_alive() is not False):
                continue
            table, steps = j.tables()
            if table is not None:
                name = j.header.get("sweep") if j.header else None
                problem = name_problem(name) or name_problem(f"recovered-{name}-{0:012}.parquet")
                if problem is not None:  # never let it build a path: set the journal aside
                    quarantine(self.layout, path, f"its header's sweep is unusable: {problem}")
                    continue
                write_partition(self.layout, f"recovered-{name}", table, steps)
                folded += table.num_rows
            retire_journal(self.layout, j)  # deleted, or quarantined if lines were damaged
        return folded

    def check_metric_files(self) -> int:
        """Quarantine stepped-metrics files whose Parquet footer fails verification.

        The records written with a damaged file go aside too (see ``read_parquet_folder``),
        so resume runs those runs again and their steps come back. Returns files moved.
        A file that cannot be opened is not damaged: :class:`StoreError` names it.
        """
        bad = 0
        for f in parquet_files(self.layout.metrics):
            try:
                reason = parquet_footer_damage(f)
            except FileNotFoundError:
                continue
            except OSError as exc:  # cannot be opened: not damage, nothing moves
                raise cannot_read(f, exc) from exc
            if reason is not None:
                quarantine_parquet(self.layout, f, reason)
                bad += 1
        return bad

    def check_artifacts(self, table: pa.Table | None = None) -> set[str]:
        """Run ids whose artifact files are missing, not the size recorded, or unsafe.

        Damaged files are quarantined (moved aside, with a warning naming them); the runs
        are then treated as not run, so ``resume=True`` runs them again. An entry whose
        path is not ``artifacts/<run id>/<file>``, or that crosses a link, is reported
        and never followed. ``table`` (with ``run_id`` and ``artifacts`` columns, already
        read) limits the check, e.g. to successful runs. Costs one ``lstat`` per artifact.
        """
        from .housekeeping import check_artifacts

        return check_artifacts(self, table)

    def remove_done_markers(self, sweep: str) -> None:
        """Delete ``journal/<sweep>-*.done`` (needed only while that sweep runs)."""
        for path in plain_files(self.layout.journal, ".done", f"{sweep}-"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def clean_temp_files(self, older_than_s: float = TEMP_MAX_AGE_S) -> int:
        """Delete what killed writers left behind; returns how many entries went.

        Temp files (``.tmp-*``) and done markers older than ``older_than_s`` in the
        store's folders and in ``artifacts/<run_id>/`` folders, and ``sweeps/*.payload``
        files whose driver is gone.
        """
        from .housekeeping import clean_store

        return clean_store(self, older_than_s)

    def compact(self, *, at_files: int = COMPACT_AT_FILES) -> int:
        """Merge small Parquet files into few large ones; returns files removed.

        Every attempt of every run is kept (readers pick the current one), and safe with
        concurrent readers and writers: the merged file is written first (readers
        deduplicate the overlap), then the merged inputs are deleted.
        """
        from .housekeeping import compact

        return compact(self, at_files)


def _manifest_text(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"


def create_exclusive(path: Path, text: str) -> bool:
    """Create ``path`` with ``text`` unless it exists; True when this call created it.

    The file is written and fsynced under a temp name, then hard-linked into place:
    ``link`` fails when the name exists, so exactly one of several racing processes
    wins, and nobody ever sees a partial file. Where hard links are not supported, it
    falls back to ``O_EXCL``.
    """
    tmp = tmp_path_for(path)
    try:
        atomic_write_text(tmp, text)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
