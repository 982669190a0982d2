"""Checksums that let every reader tell a damaged store file from a good one.

* **Journal lines** end with a tab and the CRC-32 of the rest of the line as 8 hex
  digits (:func:`seal_line`, :func:`open_line`).
* **JSON files** (manifest, sweep files) hold ``"metalab_crc32"``: the CRC-32 of the
  object's canonical JSON without that key (:func:`seal_json`, :func:`json_damage`).
* **Parquet files** are written with page checksums (Parquet's own CRC-32 of every data
  and dictionary page, checked by pyarrow on read) plus the CRC-32 of their footer, which
  page checksums do not cover, stored in the footer itself under
  :data:`FOOTER_KEY`: the value is written as eight zeros, the CRC of the footer bytes
  computed, then patched in place (same length, so nothing else moves).  A reader
  recomputes it with the value zeroed again (:func:`parquet_footer_damage`).

CRC-32 detects every error of up to 32 consecutive bits, so every single flipped bit.
Files written before checksums existed have none and are read unverified.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Key of a JSON file's checksum.
JSON_KEY = "metalab_crc32"
#: Parquet footer key-value entry holding the footer's CRC-32 (8 hex digits).
FOOTER_KEY = b"metalab.footer_crc32"
_PLACEHOLDER = b"00000000"
# Thrift compact encoding of the KeyValue's value field: header 0x18, length 8.
_VALUE_PREFIX = b"\x18\x08"
_MAGIC = b"PAR1"
#: The damage reason of a folder found where a store file should be.
FOLDER = "a folder where a file should be"


def crc_hex(data: bytes) -> bytes:
    """CRC-32 of ``data`` as 8 lowercase hex digits."""
    return b"%08x" % zlib.crc32(data)


# ------------------------------------------------------------------------ journal lines
def seal_line(body: str) -> str:
    """``body`` + TAB + its CRC-32 (``body`` holds no newline)."""
    return f"{body}\t{zlib.crc32(body.encode('utf-8')):08x}"


def open_line(raw: bytes) -> str | None:
    """The body of a sealed line, or None when its checksum does not match."""
    body, tab, crc = raw.rpartition(b"\t")
    if not tab or len(crc) != 8 or crc_hex(body) != crc:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


# --------------------------------------------------------------------------- JSON files
def _canonical(obj: dict[str, Any]) -> bytes:
    body = {k: v for k, v in obj.items() if k != JSON_KEY}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def _near_key(key: str) -> bool:
    """A key that differs from :data:`JSON_KEY` in one to three characters (damage)."""
    if len(key) != len(JSON_KEY):
        return False
    return 0 < sum(a != b for a, b in zip(key, JSON_KEY, strict=True)) <= 3


def seal_json(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` (normalized through JSON) with its checksum under :data:`JSON_KEY`."""
    plain = json.loads(json.dumps(obj, default=str))
    plain[JSON_KEY] = crc_hex(_canonical(plain)).decode()
    return dict(plain)


def json_damage(obj: Any) -> str | None:
    """Why a parsed JSON file is damaged (None when its checksum matches, or it has none)."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, found {type(obj).__name__}"
    stored = obj.get(JSON_KEY)
    if stored is None:
        if any(_near_key(k) for k in obj):
            return "its checksum key is damaged"
        return None  # written before checksums existed
    if not isinstance(stored, str) or crc_hex(_canonical(obj)).decode() != stored:
        return "checksum mismatch"
    return None


def read_sealed_json(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(object, None)`` for a good file, ``(None, reason)`` for a damaged one.

    A missing file raises FileNotFoundError; other errors opening it (permissions) raise
    as they are: they are not damage.
    """
    try:  # never through a link: a link in the store is damage, not a way out of it
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except IsADirectoryError:
        return None, FOLDER
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "a symbolic link, not a file"
        raise
    try:
        with os.fdopen(fd, "rb") as f:
            raw = f.read()
    except IsADirectoryError:
        return None, FOLDER
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"not valid JSON ({str(exc)[:80]})"
    reason = json_damage(obj)
    if reason is not None:
        return None, reason
    obj.pop(JSON_KEY, None)
    return obj, None


# ------------------------------------------------------------------------------ Parquet
def parquet_key_value() -> dict[bytes, bytes]:
    """The footer entry to add while writing (patched by :func:`seal_parquet_footer`)."""
    return {FOOTER_KEY: _PLACEHOLDER}


def _footer_bounds(read_at: Callable[[int, int], bytes], size: int) -> tuple[int, int] | str:
    """(start, length) of the Parquet footer, or the reason the file is damaged."""
    if size < 12:
        return f"{size} bytes, too short for Parquet"
    tail = read_at(8, size - 8)
    if tail[4:] != _MAGIC or read_at(4, 0) != _MAGIC:
        return "not a Parquet file (bad magic bytes)"
    length = int.from_bytes(tail[:4], "little")
    if length <= 0 or length > size - 12:
        return f"footer length {length} does not fit a {size}-byte file"
    return size - 8 - length, length


def _footer_crc(footer: bytes, at: int) -> bytes:
    zeroed = footer[:at] + _PLACEHOLDER + footer[at + 8 :]
    return crc_hex(zeroed)


def _value_at(footer: bytes) -> int | None:
    i = footer.find(FOOTER_KEY)
    if i < 0:
        return None
    j = i + len(FOOTER_KEY)
    return j + 2 if footer[j : j + 2] == _VALUE_PREFIX else -1


def seal_parquet_footer(path: Path) -> None:
    """Patch the CRC-32 of the footer into the placeholder written with the file."""
    fd = os.open(path, os.O_RDWR)
    try:
        bounds = _footer_bounds(lambda n, at: os.pread(fd, n, at), os.fstat(fd).st_size)
        if isinstance(bounds, str):
            raise ValueError(f"{path}: {bounds}")
        start, length = bounds
        footer = os.pread(fd, length + 4, start)  # footer + its length field
        at = _value_at(footer)
        if at is None or at < 0 or footer[at : at + 8] != _PLACEHOLDER:
            raise ValueError(f"{path}: no footer checksum placeholder")
        os.pwrite(fd, _footer_crc(footer, at), start + at)
    finally:
        os.close(fd)


def parquet_footer_damage(path: Path) -> str | None:
    """Why a Parquet file's footer is damaged, or None (also for a file with no checksum).

    Reads only the footer. Raises FileNotFoundError for a missing file and OSError when
    the file cannot be opened (permissions): neither is damage.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except IsADirectoryError:
        return FOLDER
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            return FOLDER
        return footer_damage(lambda n, at: os.pread(fd, n, at), st.st_size)
    finally:
        os.close(fd)


def footer_damage(read_at: Callable[[int, int], bytes], size: int) -> str | None:
    """:func:`parquet_footer_damage` of a ``size``-byte file read by ``read_at(n, offset)``
    (a local file descriptor, or range requests to an object store)."""
    bounds = _footer_bounds(read_at, size)
    if isinstance(bounds, str):
        return bounds
    start, length = bounds
    footer = read_at(length + 4, start)
    at = _value_at(footer)
    if at is None:
        return None  # written before footer checksums
    if at < 0 or _footer_crc(footer, at) != footer[at : at + 8]:
        return "footer checksum mismatch"
    return None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content (an artifact's checksum), read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
