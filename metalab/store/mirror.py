"""A local folder mirroring a remote store: every store operation runs on local files.

An object store has no rename, no append and no exclusive create, the three things the
local store's commit protocol rests on.  So a process that opens a remote store works in
a private local folder (its *mirror*) with the local code unchanged, and moves whole
files between the folder and the bucket at fixed points:

- :meth:`Mirror.pull` downloads the objects that are new or changed since it last looked
  and removes the local copies of objects deleted remotely;
- :meth:`Mirror.push` uploads the local files that are new or changed (a whole-object
  PUT is atomic, so a reader sees an object entirely or not at all) and deletes the
  objects whose local copy was deleted (folded journals, compacted records, done markers).

Uploads go in dependency order (artifacts, then metrics and records, then journals, then
done markers, then deletions): an object is never visible before what it refers to, and
a record file always lands before the journal it replaces is deleted.  Every file name
in a store is unique (a uuid, a sweep id, a run id), so two processes never write the
same object, except the manifest (the same content) and a journal (by its one writer).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path

from .atomic import TMP_PREFIX
from .remote import Remote

__all__ = ["Mirror", "new_cache_dir"]

#: Upload order: an object lands after those it refers to (see the module docstring).
_ORDER = ("artifacts/", "metrics/", "records/", "sweeps/", "quarantine/", "manifest.json")


def _rank(rel: str) -> int:
    if rel.startswith("journal/"):
        return len(_ORDER) + (1 if rel.endswith(".done") else 0)
    for i, prefix in enumerate(_ORDER):
        if rel.startswith(prefix):
            return i
    return len(_ORDER)


def new_cache_dir(prefix: str) -> Path:
    """A new private local folder for a mirror, under ``$METALAB_CACHE`` (made if
    missing) or the temp folder; the caller removes it."""
    base = os.environ.get("METALAB_CACHE") or None
    if base:
        os.makedirs(base, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def removed_with(owner: object, path: Path) -> None:
    """Remove the folder ``path`` when ``owner`` is garbage-collected (or at exit)."""
    weakref.finalize(owner, shutil.rmtree, path, True)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class Mirror:
    """The local folder ``local`` of the remote store ``remote`` (see the module docstring)."""

    def __init__(self, remote: Remote, local: Path) -> None:
        self.remote = remote
        self.local = local
        self._lock = threading.RLock()
        #: store-relative path -> (size, tag) of the object when last seen or written
        self._remote: dict[str, tuple[int, str]] = {}
        #: store-relative path -> (size, mtime_ns) of the local copy when last synced
        self._local: dict[str, tuple[int, int]] = {}
        #: store-relative paths never pulled (artifacts: fetched one run at a time)
        self.lazy: tuple[str, ...] = ("artifacts/",)

    # -- helpers ------------------------------------------------------------------
    def _sig(self, rel: str) -> tuple[int, int] | None:
        try:
            st = os.stat(self.local / rel)
        except FileNotFoundError:
            return None
        return st.st_size, st.st_mtime_ns

    def _same(self, rel: str, seen: tuple[int, str]) -> bool:
        known = self._remote.get(rel)
        if known is None:
            return False
        if known == seen:
            return True
        # Our own upload: its tag is the content's MD5, as S3 reports a plain PUT's ETag;
        # other filesystems report no comparable tag, and the size decides.
        size, tag = seen
        return known[0] == size and (not tag or known[1] == tag.strip('"'))

    def _write_local(self, rel: str, data: bytes) -> None:
        path = self.local / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f"{TMP_PREFIX}pull-{os.getpid()}-{threading.get_ident()}"
        tmp.write_bytes(data)
        os.replace(tmp, path)

    # -- public -------------------------------------------------------------------
    def pull(self, under: str = "", *, lazy: Iterable[str] | None = None) -> int:
        """Download what changed remotely below ``under`` (a folder ending in ``/``, or
        the start of paths), except the lazy folders; returns the files downloaded."""
        skip = tuple(self.lazy if lazy is None else lazy)
        with self._lock:
            listing = self.remote.listing(under)
            got = 0
            for rel, seen in sorted(listing.items()):
                if rel.startswith(skip) or os.path.basename(rel).startswith(TMP_PREFIX):
                    continue
                if self._same(rel, seen):
                    continue
                if rel in self._local and self._sig(rel) != self._local[rel]:
                    continue  # changed here and not pushed yet: ours is the newer copy
                try:
                    data = self.remote.get(rel)
                except FileNotFoundError:
                    continue  # deleted since the listing
                self._write_local(rel, data)
                self._remote[rel] = seen
                self._local[rel] = self._sig(rel) or (0, 0)
                got += 1
            for rel in [r for r in self._remote if r.startswith(under) and r not in listing]:
                if self._sig(rel) == self._local.get(rel):  # deleted remotely: follow
                    (self.local / rel).unlink(missing_ok=True)
                self._remote.pop(rel, None)
                self._local.pop(rel, None)
            return got

    def fetch(self, rel: str) -> bool:
        """Download one object (an artifact) unless a copy is here; False if absent."""
        with self._lock:
            if (self.local / rel).exists():
                return True
            try:
                data = self.remote.get(rel)
            except FileNotFoundError:
                return False
            self._write_local(rel, data)
            self._remote[rel] = (len(data), _md5(data))
            self._local[rel] = self._sig(rel) or (0, 0)
            return True

    def fetch_folder(self, under: str) -> int:
        """Download every object below ``under`` (one run's artifacts)."""
        return self.pull(under, lazy=())

    def changed(self) -> list[str]:
        """Local files new or changed since the last sync, in upload order."""
        out = []
        for folder, dirs, files in os.walk(self.local):
            dirs[:] = [d for d in dirs if not d.startswith(TMP_PREFIX)]
            for name in files:
                if name.startswith(TMP_PREFIX):
                    continue
                rel = os.path.relpath(os.path.join(folder, name), self.local)
                rel = rel.replace(os.sep, "/")
                if self._sig(rel) != self._local.get(rel):
                    out.append(rel)
        return sorted(out, key=lambda r: (_rank(r), r))

    def push(self) -> int:
        """Upload the new and changed files, then delete the objects deleted here;
        returns the number of requests made."""
        with self._lock:
            n = 0
            for rel in self.changed():
                try:
                    data = (self.local / rel).read_bytes()
                except FileNotFoundError:
                    continue  # removed meanwhile (a temp file renamed away)
                sig = self._sig(rel)
                self.remote.put(rel, data)
                self._remote[rel] = (len(data), _md5(data))
                self._local[rel] = sig or (0, 0)
                n += 1
            gone = [r for r in self._local if not (self.local / r).exists()]
            gone.sort(key=lambda r: (_rank(r), r))
            self.remote.delete(gone)
            for rel in gone:
                self._local.pop(rel, None)
                self._remote.pop(rel, None)
            return n + (1 if gone else 0)
