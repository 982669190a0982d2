"""Reading a remote store's record files straight from the bucket.

Results never copy a remote store's records: each Parquet file is a fragment on the
bucket's filesystem, so filters push down to row-group statistics and only the row
groups that may match are fetched (range requests).  Opening a file costs one request
for its last 16 KiB (footer and checksum, verified as locally) and pyarrow's own footer
read: requests grow with the number of files, not of runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .atomic import TMP_PREFIX
from .checksum import footer_damage

if TYPE_CHECKING:
    import pyarrow.dataset as ds

    from .remote import Remote

__all__ = ["remote_fragments"]

_TAIL = 16 * 1024


class _Tail:
    """``read_at(n, offset)`` over one object: its tail fetched once, the rest on demand."""

    def __init__(self, handle: Any, size: int) -> None:
        self.handle = handle
        self.start = max(0, size - _TAIL)
        self.tail = handle.read_at(size - self.start, self.start)

    def __call__(self, n: int, offset: int) -> bytes:
        if offset >= self.start:
            return bytes(self.tail[offset - self.start : offset - self.start + n])
        return bytes(self.handle.read_at(n, offset))


def _is_damage(exc: OSError) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("parquet", "thrift", "magic", "footer", "corrupt"))


def remote_fragments(remote: Remote, fmt: ds.ParquetFileFormat) -> list[Any]:
    """Fragments of the store's record files whose footers verify; a damaged file is set
    aside in ``quarantine/`` (with a warning) and left out.

    A file deleted between the listing and its footer read was compacted: the merged
    file holding its rows may be newer than the listing, so the store is listed again.
    """
    for _ in range(_RELISTS):
        frags = _fragments(remote, fmt)
        if frags is not None:
            return frags
    raise remote.error(
        OSError(f"its record files changed {_RELISTS} times while being listed"), "reading"
    )


_RELISTS = 5


def _fragments(remote: Remote, fmt: ds.ParquetFileFormat) -> list[Any] | None:
    import pyarrow as pa

    fs = remote.arrow()
    frags = []
    for rel, (size, _) in sorted(remote.listing("records/").items()):
        name = rel.rsplit("/", 1)[-1]
        if not name.endswith(".parquet") or name.startswith(TMP_PREFIX):
            continue
        key = remote.key(rel)
        try:
            with fs.open_input_file(key) as handle:
                reason = footer_damage(_Tail(handle, size), size)
            if reason is None:
                frag = fmt.make_fragment(key, filesystem=fs)
                frag.ensure_complete_metadata()
                frags.append(frag)
                continue
        except FileNotFoundError:
            return None  # compacted away since the listing: list again
        except OSError as exc:  # pyarrow's "Parquet magic bytes"... vs. the network
            if not _is_damage(exc):
                raise remote.error(exc, f"reading {rel}") from exc
            reason = str(exc).splitlines()[0][:200]
        except pa.ArrowException as exc:
            reason = str(exc).splitlines()[0][:200]
        remote.set_aside(rel, reason)
    return frags
