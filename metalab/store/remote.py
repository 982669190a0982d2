"""A store's home on a remote filesystem (S3, GCS, Azure, memory...) through fsspec.

:class:`Remote` is the bucket side of a remote store: the fsspec filesystem, the key of
the store's root and a few whole-object operations (list, get, put, delete).  Nothing
here keeps or shows a credential: the filesystem gets them from the environment
(``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``...), the provider's config files or
``storage_options=``, and :attr:`Remote.url` is the location without them.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from .urls import store_url

if TYPE_CHECKING:
    import pyarrow.fs as pafs
    from fsspec import AbstractFileSystem

__all__ = ["Remote"]

_EXTRA = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}


@dataclass
class Remote:
    """The remote side of a store: ``fs`` (fsspec) and ``root`` (the store's key)."""

    url: str
    fs: AbstractFileSystem = field(repr=False)
    root: str

    @classmethod
    def open(
        cls,
        location: str,
        *,
        storage_options: dict[str, Any] | None = None,
        filesystem: AbstractFileSystem | None = None,
    ) -> Remote:
        """The remote store at ``location`` (a URL), its filesystem made from the URL's
        scheme and ``storage_options`` unless ``filesystem`` is given."""
        url = store_url(location)
        scheme = url.split("://", 1)[0]
        if filesystem is None:
            filesystem = _filesystem(url, scheme, storage_options or {})
        root = url.split("://", 1)[1].rstrip("/")
        if scheme == "memory":
            root = "/" + root.lstrip("/")
        return cls(url=url, fs=filesystem, root=root)

    def key(self, rel: str) -> str:
        """The object key of the store-relative path ``rel``."""
        return f"{self.root}/{rel}" if rel else self.root

    def error(self, exc: BaseException, doing: str) -> StoreError:
        """A :class:`StoreError` naming the store's URL (never a credential) and the fix."""
        text = scrub(str(exc), self.fs) or type(exc).__name__
        code = errno.ENOENT if isinstance(exc, FileNotFoundError) else errno.EIO
        if isinstance(exc, PermissionError) or any(
            w in text
            for w in (
                "AccessDenied",
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "Unable to locate credentials",
                "Forbidden",
            )
        ):
            code = errno.EACCES
            fix = (
                "check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the AWS "
                "config files or storage_options=) and the bucket's permissions"
            )
        elif code == errno.ENOENT:
            fix = "check the bucket's name, or create the bucket first"
        else:
            fix = "check the endpoint (AWS_ENDPOINT_URL) and the network, then run again"
        return StoreError(code, f"store {self.url}: {doing} failed: {text[:300]}; {fix}", self.url)

    def check(self) -> None:
        """Fail at once, naming the URL, when the bucket is missing or the credentials
        are wrong (one listing request)."""
        bucket = self.root.lstrip("/").split("/", 1)[0]
        try:
            self.fs.ls(bucket if self.fs.protocol != "memory" else "/", detail=False)
        except FileNotFoundError as exc:
            raise self.error(
                FileNotFoundError(f"bucket {bucket!r} does not exist"), "opening the store"
            ) from exc
        except Exception as exc:  # botocore/aiohttp errors: named and explained
            raise self.error(exc, "opening the store") from exc

    def listing(self, under: str = "") -> dict[str, tuple[int, str]]:
        """Objects whose store-relative path starts with ``under`` (a folder ending in
        ``/``, or a folder and the start of a name): path -> ``(size, version tag)``."""
        folder, _, start = under.rpartition("/")
        base = self.key(folder).rstrip("/")
        # fsspec caches listings per process: another process's writes would stay unseen.
        self.fs.invalidate_cache()
        try:
            if start and "s3" in _protocols(self.fs):  # the prefix filters server-side
                found = self.fs.find(base, prefix=start, detail=True)
            else:
                found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        except Exception as exc:
            raise self.error(exc, f"listing {under or 'the store'}") from exc
        root = self.root.strip("/")
        out = {}
        for key, info in found.items():
            key = key.strip("/")
            if not key.startswith(root + "/") or info.get("type") == "directory":
                continue
            rel = key[len(root) + 1 :]
            if not rel.startswith(under):
                continue
            tag = info.get("ETag") or info.get("mtime") or info.get("LastModified") or ""
            out[rel] = (int(info.get("size") or 0), str(tag).strip('"'))
        return out

    def get(self, rel: str) -> bytes:
        """The bytes of one object."""
        try:
            return bytes(self.fs.cat_file(self.key(rel)))
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise self.error(exc, f"reading {rel}") from exc

    def put(self, rel: str, data: bytes) -> None:
        """Write one object whole (an object store's PUT is atomic: readers see the old
        object or the new one, never a part)."""
        try:
            self.fs.pipe_file(self.key(rel), data)
        except Exception as exc:
            raise self.error(exc, f"writing {rel}") from exc

    def delete(self, rels: list[str]) -> None:
        """Delete objects (missing ones are fine: another process was first)."""
        if not rels:
            return
        try:
            self.fs.rm([self.key(r) for r in rels])
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise self.error(exc, f"deleting {rels[0]}") from exc

    def set_aside(self, rel: str, reason: str) -> None:
        """Quarantine a damaged object: copied to ``quarantine/``, then deleted, with a
        :class:`~metalab.errors.DamagedFileWarning` (an object store has no move)."""
        import uuid
        import warnings

        from ..errors import DamagedFileWarning
        from . import reader

        reader.damage_seen += 1
        name = f"{rel.replace('/', '-')}-{uuid.uuid4().hex[:8]}"
        try:
            self.put(f"quarantine/{name}", self.get(rel))
        except FileNotFoundError:
            return  # gone already (another reader set it aside)
        self.delete([rel])
        warnings.warn(
            f"{self.url}/{rel} is damaged ({reason}); moved to {self.url}/quarantine/{name}. "
            "Its runs count as not run: run the sweep again with resume=True",
            DamagedFileWarning,
            stacklevel=3,
        )

    def rel(self, key: str) -> str:
        """The store-relative path of an object key (inverse of :meth:`key`)."""
        return key.strip("/")[len(self.root.strip("/")) + 1 :]

    def arrow(self) -> pafs.FileSystem:
        """The filesystem as pyarrow reads it (range requests, footers, row groups)."""
        import pyarrow.fs as pafs

        return pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))


_SECRET_OPTIONS = ("secret", "token", "password", "key", "credential", "sas", "signature")
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")


def scrub(text: str, fs: Any = None) -> str:
    """``text`` with every credential metalab can know of replaced by ``***``: the
    secret-looking options of ``fs`` and the AWS credentials in the environment."""
    import os

    secrets = [os.environ.get(k, "") for k in _SECRET_ENV]
    options = getattr(fs, "storage_options", None) or {}
    secrets += [
        str(v) for k, v in options.items() if any(w in str(k).lower() for w in _SECRET_OPTIONS)
    ]
    for secret in sorted({x for x in secrets if len(x) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _protocols(fs: AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def _filesystem(url: str, scheme: str, options: dict[str, Any]) -> AbstractFileSystem:
    if scheme in ("s3", "s3a") and "default_cache_type" not in options:
        # s3fs reads ahead in 50 MiB blocks by default: a footer or one row group would
        # fetch the whole file, and a filter would save nothing.
        options = {**options, "default_cache_type": "none"}
    try:
        import fsspec

        return fsspec.filesystem(scheme, **options)
    except (ImportError, ValueError) as exc:
        package = _EXTRA.get(scheme, f"an fsspec filesystem for {scheme}://")
        extra = " (pip install 'metalab[s3]')" if scheme == "s3" else ""
        raise StoreError(
            errno.EINVAL,
            f"store {url}: no filesystem for {scheme}:// is installed ({exc}); install "
            f"{package}{extra}",
            url,
        ) from exc
