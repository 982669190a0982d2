"""Atomic file writes (a temp file in the same folder, fsync, rename), and the one error
every store write gives on a full disk (:func:`disk_full_error`)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import StoreError

TMP_PREFIX = ".tmp-"
#: errnos of a full disk: no space left, or the user's quota used up.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is an ``OSError`` saying the disk (or the quota) is full."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def disk_full_error(exc: OSError, path: str | os.PathLike[str]) -> StoreError:
    """The :class:`StoreError` for a write of ``path`` that failed on a full disk.

    A :class:`StoreError` is returned as it is (it already names its path).
    """
    if isinstance(exc, StoreError):
        return exc
    code = exc.errno if exc.errno is not None else errno.ENOSPC
    where = os.fspath(path)
    what = "the disk quota is used up" if code == errno.EDQUOT else "the disk is full"
    return StoreError(
        code,
        f"cannot write {where}: {what} ({os.strerror(code)}, errno "
        f"{errno.errorcode.get(code, code)}). The sweep stopped at this first failed write; "
        "the records written before it are kept. Free space on the disk that holds "
        f"{os.path.dirname(where) or where} (or use a store elsewhere with store=...), then "
        "run again with resume=True: it finishes the sweep without re-running kept runs",
        where,
    )


@contextlib.contextmanager
def naming_full_disk(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a full-disk ``OSError`` raised inside into :func:`disk_full_error` (naming the
    file it carries, or ``path``); other errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc) and not isinstance(exc, StoreError):
            named = exc.filename if isinstance(exc.filename, (str, os.PathLike)) else path
            raise disk_full_error(exc, named) from exc
        raise


def tmp_path_for(path: Path) -> Path:
    """A unique temp path beside ``path`` (ignored by every reader)."""
    return path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{path.name}")


def atomic_write(path: Path, write: Callable[[Path], object], *, fsync: bool = True) -> None:
    """Call ``write(tmp)`` then move ``tmp`` onto ``path`` in one rename.

    ``write``'s return value (e.g. the byte count of ``Path.write_text``) is ignored.
    """
    tmp = tmp_path_for(path)
    try:
        write(tmp)
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        if is_disk_full(exc):
            raise disk_full_error(exc, path) from exc  # type: ignore[arg-type]  # OSError
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Atomically write a UTF-8 text file."""
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write a JSON file (indented, for humans)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
