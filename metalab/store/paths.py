"""Paths taken from store contents, checked before use: nothing outside the store is touched.

A store holds data written by others (a colleague on a shared disk, a copied archive, a
crafted file). Every name read from it (an artifact path in a record, the ``sweep`` of a
journal header, a run id used as a folder) must be a plain relative name, and it is
resolved against the store's real root without following a symbolic link. An entry that
breaks the rule is reported as damaged, never followed: a link or special file in a store
folder is moved to ``quarantine/`` (the link itself, never its target) with a
:class:`~metalab.store.DamagedFileWarning`, and a bad name raises :class:`StoreError`
naming it.

Moves and deletions walk down from the root with directory descriptors opened
``O_NOFOLLOW``, so a link swapped in after a check is not followed either. A file that
cannot be opened (``EACCES``...) is not damage: it raises :class:`StoreError` with the
file and the errno, and nothing moves.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DamagedFileWarning, StoreError
from .atomic import TMP_PREFIX

if TYPE_CHECKING:
    from .layout import Layout

#: Longest file name (bytes of UTF-8) on the file systems metalab supports.
NAME_MAX_BYTES = 255
#: The store's own folders; none of them may be a symbolic link.
STORE_FOLDERS = ("records", "metrics", "journal", "artifacts", "sweeps", "quarantine")

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO planted in a store must not block a reader
_DIR_FLAGS = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC
#: Walk with directory descriptors where the OS allows it (Linux, macOS); else check lstat.
_USE_FDS = (
    bool(_NOFOLLOW and _DIRECTORY)
    and {os.open, os.rename, os.mkdir, os.stat, os.unlink} <= os.supports_dir_fd
    and os.scandir in os.supports_fd
)
_FIX = (
    "The store was edited by hand, or copied from somewhere that cannot be trusted. "
    "Replace the entry by a real file or folder, or remove it (`metalab repair STORE` moves "
    "damaged entries aside), then run again with resume=True to redo the runs it held"
)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + "..." + text[-12:]


def name_problem(name: object) -> str | None:
    """Why ``name`` is not a plain file name (None when it is one)."""
    if not isinstance(name, str):
        return f"it is a {type(name).__name__}, not a string"
    if not name:
        return "it is empty"
    if name in (".", ".."):
        return f"it is {name!r}"
    if "/" in name or "\\" in name:
        return "it contains a path separator"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it contains a control character (NUL, newline, ...)"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid Unicode"
    if size > NAME_MAX_BYTES:
        return f"it is {size} bytes long; a file name has at most {NAME_MAX_BYTES}"
    return None


def unsafe_entry(what: str, value: object, problem: str, where: Path | str) -> StoreError:
    """The error for a name from store contents that is not a plain name inside the store."""
    return StoreError(
        errno.EINVAL,
        f"{what} {_show(value)} in {where} is refused ({problem}): metalab uses only plain "
        f"names inside the store and never follows one outside the store. {_FIX}",
        str(where),
    )


def check_name(name: object, what: str, where: Path | str) -> str:
    """Return ``name`` if it is one plain file name, else raise :class:`StoreError`."""
    problem = name_problem(name)
    if problem is not None:
        raise unsafe_entry(what, name, problem, where)
    assert isinstance(name, str)
    return name


def split_relative(rel: object, what: str, where: Path | str) -> list[str]:
    """The components of a relative ``a/b/c`` path from store contents, each checked."""
    if not isinstance(rel, str):
        raise unsafe_entry(what, rel, f"it is a {type(rel).__name__}, not a string", where)
    if rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":"):
        raise unsafe_entry(what, rel, "it is an absolute path", where)
    parts = rel.split("/")
    for part in parts:
        problem = name_problem(part)
        if problem is not None:
            raise unsafe_entry(what, rel, f"its component {_show(part)}: {problem}", where)
    return parts


def artifact_parts(rel: object, run_id: str, where: Path | str) -> list[str]:
    """``["artifacts", run_id, file]`` from an artifact path recorded for ``run_id``."""
    parts = split_relative(rel, "artifact path", where)
    if len(parts) != 3 or parts[0] != "artifacts" or parts[1] != run_id:
        raise unsafe_entry(
            "artifact path",
            rel,
            f"a run's artifacts are artifacts/<its run id>/<file>, here {_show(run_id)}",
            where,
        )
    return parts


def cannot_read(path: Path | str, exc: OSError) -> StoreError:
    """The error for a store file that exists but cannot be opened (not damage: kept)."""
    code = exc.errno or errno.EIO
    name = errno.errorcode.get(code, str(code))
    return StoreError(
        code,
        f"cannot read the store file {path}: {os.strerror(code)} (errno {name}). It is "
        "not damaged and was left in place; make it readable (e.g. chmod g+r, or ask its "
        "owner), or read the store as a user who may",
        str(path),
    )


def _symlink_error(path: Path | str) -> StoreError:
    return StoreError(
        errno.ELOOP,
        f"{path} is a symbolic link (or not a folder) where the store has its own folder; "
        f"metalab never follows links inside a store. {_FIX} "
        f"(e.g. `rm {path} && mkdir {path}`, after saving what it points to)",
        str(path),
    )


def check_store_folders(root: Path) -> None:
    """Refuse a store whose own folders are symbolic links or not folders."""
    for name in STORE_FOLDERS:
        try:
            st = os.lstat(root / name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise cannot_read(root / name, exc) from exc
        if not stat.S_ISDIR(st.st_mode):
            raise _symlink_error(root / name)


@contextlib.contextmanager
def open_dir(root: Path, parts: Sequence[str]) -> Iterator[int | None]:
    """A descriptor of ``root/parts...`` reached without following any link.

    Yields None where the OS has no ``dir_fd`` support; the chain is then checked with
    ``lstat`` instead (a link swapped in between the check and the use is not caught).
    """
    if not _USE_FDS:
        path = root
        for p in parts:
            path = path / p
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise _symlink_error(path)
        yield None
        return
    fd = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)  # the real root, resolved once
    try:
        path = root
        for p in parts:
            path = path / p
            try:
                new = os.open(p, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _symlink_error(path) from exc
                raise
            os.close(fd)
            fd = new
        yield fd
    finally:
        os.close(fd)


def _at(fd: int | None, folder: Path, name: str) -> tuple[str | Path, dict[str, int]]:
    """``(path, kwargs)`` for an os call on ``name`` in an open folder (or by full path)."""
    return (name, {"dir_fd": fd}) if fd is not None else (folder / name, {})


def lstat_in(fd: int | None, folder: Path, name: str) -> os.stat_result:
    """``lstat`` of ``name`` in the folder open as ``fd`` (never follows a link)."""
    path, kw = _at(fd, folder, name)
    return os.stat(path, follow_symlinks=False, **kw)


def probe_readable(fd: int | None, folder: Path, name: str) -> None:
    """Raise :class:`StoreError` (file and errno) if a regular file cannot be opened."""
    path, kw = _at(fd, folder, name)
    try:
        f = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC, **kw)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise cannot_read(folder / name, exc) from exc
    os.close(f)


def read_file(path: Path) -> bytes:
    """The bytes of a store file, never through a link (``O_NOFOLLOW``).

    Raises ``FileNotFoundError`` when it is gone, :class:`StoreError` when it is a link
    or not a regular file, or cannot be read (naming the file and the errno).
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _not_regular(path) from exc
        raise cannot_read(path, exc) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _not_regular(path)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        if isinstance(exc, StoreError):
            raise
        raise cannot_read(path, exc) from exc
    finally:
        os.close(fd)


def _not_regular(path: Path) -> StoreError:
    return StoreError(
        errno.ELOOP,
        f"{path} is a symbolic link or not a regular file; metalab never follows links "
        f"inside a store. {_FIX}",
        str(path),
    )


def plain_files(folder: Path, suffix: str = "", prefix: str = "") -> list[Path]:
    """Regular files of a store folder named ``prefix*suffix`` (temp and dot files skipped).

    A link, folder or special file with such a name is moved to ``quarantine/`` with a
    warning (the link itself: its target is never read).
    """
    from .layout import Layout

    try:
        with open_dir(folder.parent, [folder.name]) as fd:
            with os.scandir(fd if fd is not None else folder) as it:
                entries = [(e.name, e.is_file(follow_symlinks=False)) for e in it]
    except FileNotFoundError:
        return []
    except StoreError:
        raise
    except OSError as exc:
        raise cannot_read(folder, exc) from exc
    files: list[str] = []
    odd: list[str] = []
    for name, regular in entries:
        if not (name.endswith(suffix) and name.startswith(prefix)) or name.startswith("."):
            continue
        (files if regular else odd).append(name)
    for name in odd:
        quarantine(Layout(folder.parent), folder / name, "a link or folder, not a file")
    return sorted(folder / n for n in files)


def _quarantine_name(path: Path, layout: Layout) -> str:
    name = path.name
    if path.parent.parent == layout.artifacts:  # artifacts/<run_id>/<name>: keep the run id
        name = f"{path.parent.name}-{name}"
    if len(name.encode("utf-8")) > NAME_MAX_BYTES:
        digest = hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()[:16]
        tail = name.encode("utf-8")[-200:].decode("utf-8", "ignore")
        name = f"{digest}-{tail}"
    return name


def relative_parts(layout: Layout, path: Path) -> list[str]:
    """The checked components of a path inside the store (never outside it)."""
    try:
        rel = path.relative_to(layout.root)
    except ValueError:
        raise unsafe_entry(
            "path", str(path), f"it is outside the store {layout.root}", layout.root
        ) from None
    parts = list(rel.parts)
    if not parts:
        raise unsafe_entry("path", str(path), "it is the store itself", layout.root)
    for p in parts:
        check_name(p, "path", layout.root)
    return parts


def quarantine(
    layout: Layout,
    path: Path,
    reason: str,
    *,
    consequence: str = "the runs it held are treated as not run, so resume=True re-runs them",
) -> None:
    """Move a damaged store entry to ``quarantine/`` (never delete it) and warn, naming it.

    Only entries inside the store move, and never through a link. A regular file that
    cannot be opened (``EACCES``, ``EPERM``...) is not damage: :class:`StoreError` names
    it and its errno, and nothing moves. Where the move itself is not allowed (a
    read-only store), the file is skipped with the same warning.
    """
    parts = relative_parts(layout, path)
    try:
        with open_dir(layout.root, parts[:-1]) as fd:
            st = lstat_in(fd, path.parent, parts[-1])
            if stat.S_ISREG(st.st_mode):
                probe_readable(fd, path.parent, parts[-1])
            dest = _move_aside(layout, fd, path, _quarantine_name(path, layout))
    except FileNotFoundError:
        return  # another reader moved it first (or compaction removed it)
    except StoreError:
        raise
    except OSError as exc:  # e.g. a read-only store: skip the file, say so
        warnings.warn(
            f"damaged store file {path} ({reason}) is skipped; it could not be moved to "
            f"{layout.quarantine}: {exc}",
            DamagedFileWarning,
            stacklevel=3,
        )
        return
    warnings.warn(
        f"damaged store file {path} ({reason}) was moved to {dest}; {consequence}",
        DamagedFileWarning,
        stacklevel=3,
    )


def _move_aside(layout: Layout, fd: int | None, path: Path, name: str) -> Path:
    """Rename ``path`` (in the folder open as ``fd``) into quarantine/ under a free name."""
    q = layout.quarantine
    with open_dir(layout.root, []) as root_fd:
        target, kw = _at(root_fd, layout.root, q.name)
        with contextlib.suppress(FileExistsError):
            os.mkdir(target, **kw)
    with open_dir(layout.root, [q.name]) as qfd:
        dest = name
        with contextlib.suppress(FileNotFoundError):
            lstat_in(qfd, q, dest)  # never overwrite an earlier quarantined file
            stem, dot, ext = name.rpartition(".")
            tag = os.urandom(4).hex()
            dest = f"{stem}-{tag}.{ext}" if dot and stem else f"{name[:240]}-{tag}"
        src, skw = _at(fd, path.parent, path.name)
        dst, dkw = _at(qfd, q, dest)
        os.rename(
            src, dst, src_dir_fd=skw.get("dir_fd"), dst_dir_fd=dkw.get("dir_fd")
        )  # a link moves as a link: its target is never touched
    return q / dest


def run_artifact_dir(root: Path, run_id: str) -> Path:
    """``artifacts/<run_id>``, created if missing; a link or file there is refused."""
    check_name(run_id, "run id", root / "artifacts")
    arts = root / "artifacts"
    os.makedirs(root, exist_ok=True)  # a bare Capture may be the first to write the store
    with contextlib.suppress(FileExistsError):
        os.mkdir(arts)
    with open_dir(root, ["artifacts"]) as fd:
        target, kw = _at(fd, arts, run_id)
        with contextlib.suppress(FileExistsError):
            os.mkdir(target, **kw)
        if not stat.S_ISDIR(lstat_in(fd, arts, run_id).st_mode):
            raise _symlink_error(arts / run_id)
    return arts / run_id


def artifact_file(root: Path, run_id: str, rel: object, where: str) -> Path:
    """The file of an artifact entry, checked: inside ``artifacts/<run_id>/``, no link.

    A missing file is returned as is (the caller reports it); one that exists must be a
    regular file that can be opened, else :class:`StoreError` names it.
    """
    parts = artifact_parts(rel, run_id, where)
    path = root.joinpath(*parts)
    try:
        with open_dir(root, parts[:2]) as fd:
            if not stat.S_ISREG(lstat_in(fd, path.parent, parts[2]).st_mode):
                raise _not_regular(path)
            probe_readable(fd, path.parent, parts[2])
    except FileNotFoundError:
        return path
    real = os.path.realpath(path)  # a second look, whatever the OS allowed above
    if not real.startswith(os.path.join(str(root), "")):
        raise unsafe_entry("artifact path", rel, f"it resolves to {real}", where)
    return path


def remove_stale(
    root: Path, parts: Sequence[str], older_than_s: float, now: float, *, done: bool = False
) -> int:
    """Delete ``.tmp-*`` (and with ``done``, ``*.done``) entries older than the threshold.

    The folder ``root/parts...`` is reached without following a link; a link named
    ``.tmp-*`` is removed as a link. Returns how many entries were removed.
    """
    folder = root.joinpath(*parts)
    removed = 0
    with open_dir(root, parts) as fd:
        with os.scandir(fd if fd is not None else folder) as it:
            names = [
                e.name
                for e in it
                if e.name.startswith(TMP_PREFIX) or (done and e.name.endswith(".done"))
            ]
        for name in names:
            path, kw = _at(fd, folder, name)
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                if now - os.stat(path, follow_symlinks=False, **kw).st_mtime > older_than_s:
                    os.unlink(path, **kw)
                    removed += 1
    return removed
