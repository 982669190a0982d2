"""Store locations: a folder path, never a URL (object stores are not supported yet).

Without this check ``store="s3://bucket/x"`` is taken as a relative path and silently
creates a local folder ``s3:``, so the results are not where the user thinks.
"""

from __future__ import annotations

import errno
import os
import re

from ..errors import StoreError

__all__ = ["check_store_path"]

# ``scheme://...`` as typed, or ``scheme:/...`` once pathlib has collapsed the double
# slash (``Path("s3://b/x")`` is ``s3:/b/x``).  Two letters at least: ``C:/`` is a
# Windows drive, not a URL scheme.
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):/(?P<rest>.*)$", re.S)

_SUPPORTED = (
    "metalab stores are local folders, or folders on a shared filesystem (NFS, Lustre, "
    "GPFS) mounted on every worker; object stores (s3://, gs://, az://) are planned, "
    "not supported yet"
)


def check_store_path(path: str | os.PathLike[str]) -> None:
    """Raise :class:`~metalab.errors.StoreError` when ``path`` is a URL, not a folder path.

    Examples
    --------
    >>> check_store_path("runs/pi_mc")
    >>> check_store_path("s3://bucket/pi_mc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    metalab.errors.StoreError: store='s3://bucket/pi_mc' is a URL, not a folder path. ...
    """
    text = os.fspath(path)
    match = _URL.match(text)
    if match is None:
        return
    scheme, rest = match["scheme"], match["rest"]
    url = text if rest.startswith("/") else f"{scheme}://{rest}"  # undo pathlib's collapse
    if scheme.lower() == "file":
        local = "/" + rest.lstrip("/")
        url = f"{scheme}://{local}"
        fix = f"Pass the path itself: store={local!r}"
    else:
        fix = (
            "Pass a folder path (store='runs/<experiment>'), or mount the bucket "
            "(s3fs, gcsfuse, rclone mount) and pass its mount point"
        )
    raise StoreError(
        errno.EINVAL, f"store={url!r} is a URL, not a folder path. {_SUPPORTED}. {fix}", url
    )
