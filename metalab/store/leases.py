"""Leases: several drivers share one sweep by claiming its partitions through the store.

Any number of drivers (``metalab.run`` in two terminals, the tasks of an ``sbatch
--array``) that plan the same runs on one store form a *cohort*, kept in one folder::

    <store>/leases/<key>/         key: hash of the definition and the planned run ids
        table.json                the partitions (bounds over the plan), created exclusively
                                  by the first driver; its mtime is the cohort's heartbeat
        <k>.lease                 partition k is running: its owner (host, pid, sweep)
        <k>.done                  partition k's records are in the store

A lease is created with ``O_CREAT | O_EXCL`` (atomic on local file systems and on NFS v3
and later), so exactly one driver gets it.  Its holder's process renews it (one ``utime``
every ``ttl / 5`` seconds, from a daemon thread) while the partition runs; a lease not
renewed for ``ttl`` seconds has expired (its holder died), as has the lease of a dead
process of this host (a driver killed and restarted on a laptop waits for nothing), and
may be taken over: the taker
renames it to a unique tombstone name (only one rename of a name succeeds), checks that it
moved the stale file it saw (same inode), then creates its own lease exclusively.  The
holder writes ``<k>.done`` *before* removing its lease, and a claimer checks for
``<k>.done`` *after* creating its lease, so a finished partition is never claimed again.
A holder that lets its partition go unfinished (interrupted, or its task failed) does not
remove its lease: it replaces it with one marked ``released``, which has expired at once.
So every claimer of a partition that some sweep ran before takes over a lease, and learns
from it who ran the partition before (its ``holders`` and ``sweep``), whose records it
must keep rather than run again.

Expiry compares the lease's mtime with this host's clock: hosts sharing a store need
clocks that agree to well within ``ttl`` (NTP does that on clusters).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import os
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ExperimentError, StoreError
from .atomic import TMP_PREFIX, atomic_write_json, naming_full_disk
from .journal import HOST
from .processes import process_alive

__all__ = [
    "DEFAULT_LEASE_S",
    "DONE",
    "EXPIRED",
    "FREE",
    "HELD",
    "LEASE_ENV",
    "Claim",
    "Cohort",
    "lease_seconds",
    "plan_key",
]

#: Environment variable: seconds a lease lives without renewal (default 60).
LEASE_ENV = "METALAB_LEASE_S"
DEFAULT_LEASE_S = 60.0
#: Partition states.
DONE, HELD, FREE, EXPIRED = "done", "held", "free", "expired"
#: The folder of the cohorts, in the store.
LEASES = "leases"
_TABLE = "table.json"
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def lease_seconds() -> float:
    """Seconds a lease lives without renewal: ``$METALAB_LEASE_S`` or 60."""
    text = os.environ.get(LEASE_ENV)
    if not text:
        return DEFAULT_LEASE_S
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value != value or value == float("inf"):
        raise ExperimentError(
            f"{LEASE_ENV}={text!r} is not a number of seconds > 0; set it to e.g. 60 "
            f"(how long a dead driver's partitions wait before others take them over), "
            f"or unset it"
        )
    return value


def plan_key(definition: dict[str, str], run_ids: Sequence[str]) -> str:
    """The cohort key of a plan: the same in every driver that plans the same runs."""
    h = hashlib.sha256(json.dumps(definition, sort_keys=True).encode())
    h.update("\n".join(run_ids).encode())
    return h.hexdigest()[:32]


# -- renewal ----------------------------------------------------------------------------


class _Renewer:
    """One daemon thread per process touching every lease (and cohort table) it holds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: dict[str, tuple[int, float]] = {}  # path -> (inode, ttl)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._interval = float("inf")  # of the thread's current sleep

    def add(self, path: str, ino: int, ttl: float) -> None:
        with self._lock:
            shorter = ttl < self._interval * 5
            self._paths[path] = (ino, ttl)
            # After a fork the child has no thread, whatever the copied object says.
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="metalab-leases", daemon=True
                )
                self._thread.start()
        if shorter:  # the thread sleeps too long for this lease: wake it now
            self._wake.set()

    def discard(self, path: str) -> None:
        with self._lock:
            self._paths.pop(path, None)

    def _run(self) -> None:
        while True:
            with self._lock:
                items = list(self._paths.items())
            for path, (ino, _ttl) in items:
                _touch_if(path, ino)
            with self._lock:
                ttls = [ttl for _, ttl in self._paths.values()]
                self._interval = max(0.05, min(ttls, default=DEFAULT_LEASE_S) / 5)
            self._wake.wait(self._interval)
            self._wake.clear()


def _touch_if(path: str, ino: int) -> bool:
    """Renew ``path`` if it is still the file of inode ``ino`` (not a taker's lease)."""
    try:
        if os.lstat(path).st_ino != ino:
            return False
        os.utime(path)
        return True
    except OSError:
        return False


_RENEWER = _Renewer()


# -- the cohort -------------------------------------------------------------------------


def _real_dir(path: Path) -> None:
    """Make ``path`` (a folder of the store) unless it exists; refuse a link or a file."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise StoreError(
            errno.ENOTDIR,
            f"{path} is not a plain folder (a link or a file); metalab keeps its leases "
            "there. Remove it (nothing else lives there), then run again",
            str(path),
        )


def _write_new(path: str | Path, text: str) -> int | None:
    """Create ``path`` exclusively with ``text``; its inode, or None when it exists."""
    try:
        fd = os.open(path, _FLAGS | _CLOEXEC, 0o666)
    except FileExistsError:
        return None
    try:
        with naming_full_disk(path):
            os.write(fd, text.encode())
        return os.fstat(fd).st_ino
    except OSError:  # a full disk: no empty lease may stay to look held
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    finally:
        os.close(fd)


def _read_json(path: str | Path) -> dict[str, Any] | None:
    """A lease or table file's content (None: gone, being written, or not ours)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | _CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 1 << 20)
    finally:
        os.close(fd)
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _age(path: Path) -> float:
    """Seconds since ``path`` was last renewed (infinite when it is gone)."""
    try:
        return time.time() - os.lstat(path).st_mtime
    except FileNotFoundError:
        return float("inf")


def _checked_bounds(value: object, n_runs: int) -> tuple[int, ...] | None:
    """Partition bounds read from a table: ascending ints from 0 to ``n_runs`` (else None)."""
    if not isinstance(value, list) or len(value) < 2:
        return None
    if not all(isinstance(b, int) and not isinstance(b, bool) for b in value):
        return None
    if value[0] != 0 or value[-1] != n_runs or any(a >= b for a, b in itertools.pairwise(value)):
        return None
    return tuple(value)


def owner(sweep: str, holders: Sequence[str] = ()) -> dict[str, Any]:
    """What a lease says about its holder (for humans and for a taker)."""
    return {
        "host": HOST,
        "pid": os.getpid(),
        "at": time.time(),
        "sweep": sweep,
        "holders": list(holders),
    }


def _stale(info: dict[str, Any] | None, mtime: float, ttl: float, sweep: str) -> bool:
    """Whether a lease may be taken: not renewed for ``ttl`` seconds, or its holder is a
    dead process of this host, or it is ``sweep``'s own (an attempt that died)."""
    if time.time() - mtime > ttl:
        return True
    if info is None:  # being written: its holder is alive
        return False
    if info.get("released") is True:  # let go unfinished by a live holder
        return True
    if sweep and info.get("sweep") == sweep:
        return True
    pid, at = info.get("pid"), info.get("at")
    if info.get("host") != HOST or not isinstance(pid, int) or isinstance(pid, bool):
        return False
    return not process_alive(pid, at if isinstance(at, (int, float)) else None)


@dataclass(frozen=True)
class Cohort:
    """One cohort folder and its partitions (picklable: partition tasks get it)."""

    folder: str
    ttl: float
    #: Partition k covers the planned runs at positions ``bounds[k]:bounds[k + 1]``.
    bounds: tuple[int, ...]
    #: The inode of ``table.json``: a new cohort of the same key has another.
    table_ino: int = 0

    @property
    def n(self) -> int:
        """How many partitions."""
        return len(self.bounds) - 1

    def path(self, k: int, suffix: str) -> str:
        """The lease or done-marker file of partition ``k`` (``suffix``: lease, done)."""
        return os.path.join(self.folder, f"{k:06d}.{suffix}")

    @classmethod
    def join(
        cls, root: Path, key: str, make_bounds: Callable[[], list[int]], ttl: float, n_runs: int
    ) -> Cohort:
        """Join the live cohort of ``key`` in the store at ``root``, or start it.

        A cohort whose table was not touched for ``ttl`` seconds has no live driver:
        it is retired and a new one starts from the records (which are the truth).
        """
        base = root / LEASES
        _real_dir(base)
        folder = base / key
        for _ in range(200):  # each turn another driver changed something meanwhile
            _real_dir(folder)
            table = folder / _TABLE
            info = _read_json(table)
            if info is None and os.path.lexists(table):  # being written, or left torn
                if _age(table) > ttl:
                    retire(folder, _ino(table))
                else:
                    time.sleep(0.05)
                continue
            if info is None:
                bounds = make_bounds()
                text = json.dumps({"bounds": bounds, "created": time.time(), **owner("")})
                ino = _write_new(table, text)
                if ino is None:
                    time.sleep(0.01)  # another driver is writing it: read it again
                    continue
                cohort = cls(str(folder), ttl, tuple(bounds), ino)
            else:
                ino = _ino(table)
                got = _checked_bounds(info.get("bounds"), n_runs)
                if _age(table) > ttl or got is None:  # dead, or not a table we wrote
                    retire(folder, ino)
                    continue
                cohort = cls(str(folder), ttl, got, ino)
            cohort.beat()
            return cohort
        raise StoreError(
            errno.EBUSY,
            f"could not join the drivers sharing {folder}: it changed 200 times while "
            "joining. Run again; if it persists, remove that folder (no sweep may be running)",
            str(folder),
        )

    def beat(self) -> None:
        """Keep the cohort alive while this driver is in it (renewed in the background)."""
        table = str(Path(self.folder) / _TABLE)
        if _touch_if(table, self.table_ino):
            _RENEWER.add(table, self.table_ino, self.ttl)

    def alive(self) -> bool:
        """Whether this cohort still exists (not retired by a driver that found it done)."""
        return _ino(Path(self.folder) / _TABLE) == self.table_ino

    def leave(self) -> None:
        """Stop renewing the cohort; retire it when every partition is done."""
        _RENEWER.discard(str(Path(self.folder) / _TABLE))
        if self.alive() and all(self.state(k)[0] == DONE for k in range(self.n)):
            retire(Path(self.folder), self.table_ino)

    def state(self, k: int, sweep: str = "") -> tuple[str, dict[str, Any] | None]:
        """Partition ``k``: DONE, HELD (by a live driver), FREE or EXPIRED, and the lease's
        content. A lease of ``sweep`` itself (an earlier attempt that died), or of a dead
        process of this host, is EXPIRED at once."""
        if os.path.lexists(self.path(k, "done")):
            return DONE, None
        lease = self.path(k, "lease")
        try:
            st = os.lstat(lease)
        except FileNotFoundError:
            return FREE, None
        info = _read_json(lease)
        if _stale(info, st.st_mtime, self.ttl, sweep):
            return EXPIRED, info
        return HELD, info

    def claim(self, k: int, sweep: str) -> Claim | None:
        """Lease partition ``k`` for ``sweep``; None when it is done or held by another."""
        lease = self.path(k, "lease")
        previous: list[str] = []
        for _ in range(10):
            if os.path.lexists(self.path(k, "done")):
                return None
            try:
                ino = _write_new(lease, json.dumps(owner(sweep, previous)))
            except FileNotFoundError:
                return None  # the cohort was retired: the driver plans again
            if ino is not None:
                if os.path.lexists(self.path(k, "done")):  # finished just before
                    with contextlib.suppress(OSError):
                        if os.lstat(lease).st_ino == ino:
                            os.unlink(lease)
                    return None
                _RENEWER.add(lease, ino, self.ttl)
                return Claim(self, k, sweep, ino, tuple(previous))
            try:
                seen = os.lstat(lease)
            except FileNotFoundError:
                continue  # released meanwhile: try again
            info = _read_json(lease)
            if not _stale(info, seen.st_mtime, self.ttl, sweep):
                return None  # held by a live driver (or being written by one)
            if not self._take_over(lease, seen.st_ino):
                continue
            if info:
                before = info.get("holders")
                chain = [*(before if isinstance(before, list) else []), info.get("sweep")]
                previous = [h for h in chain if isinstance(h, str) and h and h != sweep]
        return None

    def _take_over(self, lease: str, seen: int) -> bool:
        """Move the expired lease of inode ``seen`` aside; False when another driver was
        faster (the file at that name is no longer the stale one)."""
        head, name = os.path.split(lease)
        tomb = os.path.join(head, f"{TMP_PREFIX}stale-{uuid.uuid4().hex[:12]}-{name}")
        try:
            os.rename(lease, tomb)
        except FileNotFoundError:
            return False
        if os.lstat(tomb).st_ino != seen:  # another taker's fresh lease: put it back
            with contextlib.suppress(FileExistsError):
                os.link(tomb, lease)
            os.unlink(tomb)
            return False
        os.unlink(tomb)
        return True


@dataclass
class Claim:
    """A held lease on one partition; :meth:`release` it whatever happens."""

    cohort: Cohort
    part: int
    sweep: str
    ino: int
    #: Sweeps that held this partition before and died (their runs are kept).
    previous: tuple[str, ...] = ()
    released: bool = field(default=False, init=False)

    def release(self, *, done: bool) -> None:
        """Mark the partition done (its records are written) and drop the lease, or let it
        go unfinished: the lease is then replaced by a released one, which the next
        claimer takes over as an expired lease (keeping the runs of this sweep)."""
        if self.released:
            return
        self.released = True
        lease = self.cohort.path(self.part, "lease")
        _RENEWER.discard(lease)
        if done:  # before the lease goes: a claimer checks for it after its create
            with contextlib.suppress(OSError):
                _write_new(self.cohort.path(self.part, "done"), json.dumps(owner(self.sweep)))
        with contextlib.suppress(OSError):
            if os.lstat(lease).st_ino != self.ino:
                return  # not ours any more (taken over): nothing to drop
            if done:
                os.unlink(lease)
                return
            released = {**owner(self.sweep, self.previous), "released": True}
            try:
                atomic_write_json(Path(lease), released)
            except OSError:  # a full disk: removing needs no space, and a held lease of a
                os.unlink(lease)  # dying worker would hide the partition from a resume


def _ino(path: Path) -> int:
    try:
        return os.lstat(path).st_ino
    except FileNotFoundError:
        return -1


def retire(folder: Path, table_ino: int) -> None:
    """Remove the cohort folder whose table has inode ``table_ino`` (renamed aside first,
    so nobody joins it half-deleted); another cohort found there is put back."""
    tomb = folder.with_name(f"{TMP_PREFIX}retired-{uuid.uuid4().hex[:12]}")
    try:
        os.rename(folder, tomb)
    except OSError as exc:  # gone already, or a racing retire: nothing to do
        if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST, errno.EBUSY):
            raise
        return
    if _ino(tomb / _TABLE) not in (table_ino, -1):  # a new cohort started meanwhile
        with contextlib.suppress(OSError):
            os.rename(tomb, folder)
            return
    shutil.rmtree(tomb, ignore_errors=True)
