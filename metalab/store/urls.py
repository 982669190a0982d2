"""Store locations: a folder path, or a filesystem URL (``s3://bucket/prefix``...).

A URL is recognised as typed (``s3://b/x``) and after :class:`pathlib.Path` has collapsed
its double slash (``Path("s3://b/x")`` is ``s3:/b/x``), so it never silently becomes a
local folder named ``s3:``.  ``file://`` URLs are local folders.  A URL that carries
credentials (``s3://KEY:SECRET@bucket``) is refused, and every URL metalab shows is
:func:`redact`-ed first: credentials come from the environment, the AWS config files or
``storage_options=``, never from the store's location.
"""

from __future__ import annotations

import errno
import os
import re
from urllib.parse import urlsplit, urlunsplit

from ..errors import StoreError

__all__ = ["check_store_path", "is_url", "local_path", "redact", "store_url"]

# ``scheme://...`` as typed, or ``scheme:/...`` once pathlib has collapsed the double
# slash.  Two letters at least: ``C:/`` is a Windows drive, not a URL scheme.
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):/(?P<rest>.*)$", re.S)
#: Query parameters that may hold a secret (presigned URLs, SAS tokens...).
_SECRET_QUERY = re.compile(r"(?i)(sig|signature|token|secret|key|credential|password)")


def _parts(path: str | os.PathLike[str]) -> tuple[str, str] | None:
    """``(scheme, url as typed)`` when ``path`` is a URL, else None."""
    text = os.fspath(path)
    match = _URL.match(text)
    if match is None:
        return None
    scheme, rest = match["scheme"].lower(), match["rest"]
    url = text if rest.startswith("/") else f"{match['scheme']}://{rest}"  # undo the collapse
    return scheme, url


def is_url(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a URL other than ``file://`` (a store on a remote filesystem)."""
    parts = _parts(path)
    return parts is not None and parts[0] != "file"


def local_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a local path: ``file:///x`` becomes ``/x``; anything else is unchanged."""
    parts = _parts(path)
    if parts is None or parts[0] != "file":
        return os.fspath(path)
    rest = parts[1].split(":", 1)[1]
    return "/" + rest.lstrip("/")


def redact(url: str) -> str:
    """``url`` without credentials: user info and secret-looking query values removed."""
    try:
        split = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = split.netloc.rsplit("@", 1)[-1]
    query = "&".join(
        f"{k.split('=')[0]}=***" if _SECRET_QUERY.search(k.split("=")[0]) else k
        for k in split.query.split("&")
        if k
    )
    return urlunsplit((split.scheme, netloc, split.path, query, ""))


def store_url(path: str | os.PathLike[str]) -> str:
    """The URL of a remote store, checked: no credentials in it, a bucket named.

    Raises :class:`~metalab.errors.StoreError` (showing the URL without its secret).
    """
    parts = _parts(path)
    if parts is None:
        raise ValueError(f"{os.fspath(path)!r} is not a URL")
    scheme, url = parts
    split = urlsplit(url)
    shown = redact(url)
    if "@" in split.netloc or split.password or _SECRET_QUERY.search(split.query or ""):
        raise StoreError(
            errno.EINVAL,
            f"store={shown!r}: the URL carries credentials, which metalab refuses to keep "
            "in a store location (it is shown in logs, errors and reports). Remove them "
            "and pass them the standard ways: environment variables (AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL...), the AWS config files, or "
            "storage_options={'key': ..., 'secret': ...}",
            shown,
        )
    if not split.netloc and scheme not in ("memory",):
        raise StoreError(
            errno.EINVAL,
            f"store={shown!r} names no bucket; write {scheme}://<bucket>/<prefix>",
            shown,
        )
    return f"{scheme}://{split.netloc}{split.path.rstrip('/')}"


def check_store_path(path: str | os.PathLike[str]) -> None:
    """Raise :class:`~metalab.errors.StoreError` when ``path`` is a URL that is unsafe
    to use as a store location (credentials in it, no bucket).

    Examples
    --------
    >>> check_store_path("runs/pi_mc")
    >>> check_store_path("s3://bucket/pi_mc")
    >>> check_store_path("s3://AKIA:secret@bucket/pi_mc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    metalab.errors.StoreError: store='s3://bucket/pi_mc': the URL carries credentials, ...
    """
    if is_url(path):
        store_url(path)
