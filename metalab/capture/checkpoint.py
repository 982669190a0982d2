"""Checkpoints of a run's state: ``<store>/checkpoints/<run_id>/``.

Each checkpoint is two files, both written atomically (temp file, fsync, rename):

- ``ckpt-<seq>.state.<ext>``: the state, in an artifact format (``npy``, ``json``,
  ``parquet``, ``bin``, ``txt``; ``pickle`` only with ``format="pickle"``), or, for
  dicts and lists that hold arrays, bytes or tables, one ``.npz`` bundle
  (:mod:`metalab.capture.ckpt_bundle`);
- ``ckpt-<seq>.json``: its index entry, sealed with a checksum: the state file's name,
  format, size and sha256, the states of the run's random generators, and what the
  run had captured so far (scalars, stepped metrics, artifact entries, log lines).

The index entry is written last, so a checkpoint exists once its entry does.  The
latest ``keep`` are kept.  Reading goes newest first; a checkpoint whose entry or state
file is damaged (checksum mismatch, unreadable) moves to ``quarantine/`` with a warning
and the one before it is used.  Folders are reached without following links, as every
store path (:mod:`metalab.store.paths`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CaptureError, StoreError, UnsafePickleError, UnsupportedArtifactError
from .serializers import STRICT_FORMATS, find_serializer, get_serializer

__all__ = ["Checkpoint", "checkpoint_dir", "discard", "latest", "write"]

FOLDER = "checkpoints"
_ENTRY = re.compile(r"^ckpt-(\d{9})\.json$")


@dataclass
class Checkpoint:
    """A checkpoint read back: the state and what was captured up to it."""

    seq: int
    state: Any
    generators: dict[str, Any]
    captured: dict[str, Any]


def checkpoint_dir(root: Path, run_id: str, *, create: bool) -> Path | None:
    """``checkpoints/<run_id>`` (created if asked); None when missing; links refused."""
    from ..store.paths import check_name, open_dir

    check_name(run_id, "run id", root / FOLDER)
    base = root / FOLDER
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(base)
    try:
        with open_dir(root, [FOLDER]) as fd:
            # Relative to the open folder (never through a link), where the OS allows.
            target, kw = (run_id, {"dir_fd": fd}) if fd is not None else (base / run_id, {})
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(target, **kw)
            if not stat.S_ISDIR(os.stat(target, follow_symlinks=False, **kw).st_mode):
                raise StoreError(
                    errno.ELOOP,
                    f"{base / run_id} is a symbolic link or a file where the run's checkpoint "
                    "folder belongs; metalab never follows links inside a store. Remove it",
                    str(base / run_id),
                )
    except FileNotFoundError:
        if create:
            raise
        return None
    return base / run_id


def _entries(folder: Path) -> list[tuple[int, Path]]:
    from ..store.paths import plain_files

    out = []
    for p in plain_files(folder, ".json", "ckpt-"):
        m = _ENTRY.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def _serializer(state: Any, format: str | None) -> Any:
    s = get_serializer(format) if format is not None else find_serializer(state)
    if s.format in STRICT_FORMATS and not s.handles(state):
        raise UnsupportedArtifactError(
            f"checkpoint: format {s.format!r} cannot save {type(state).__module__}."
            f"{type(state).__qualname__} objects; leave format= out to choose by type, or "
            "use format='pickle'"
        )
    if s.format in ("png", "svg", "pdf"):
        raise UnsupportedArtifactError(
            "checkpoint: a figure is not a state; checkpoint the numbers it is drawn from"
        )
    return s


def _is_nested(state: Any) -> bool:
    """A dict or list that is not plain JSON: saved as a bundle (see ``ckpt_bundle``)."""
    from .ckpt_bundle import is_bundle_state
    from .serializers import _is_jsonable

    return is_bundle_state(state) and not _is_jsonable(state)


def write(
    root: Path,
    run_id: str,
    state: Any,
    *,
    format: str | None,
    keep: int,
    generators: dict[str, Any],
    captured: dict[str, Any],
) -> int:
    """Store one checkpoint durably; returns its sequence number."""
    from ..store.atomic import atomic_write, atomic_write_text
    from ..store.checksum import seal_json, sha256_file

    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise CaptureError(f"capture.checkpoint(keep=...) must be an int >= 1, got {keep!r}")
    if _is_nested(state) and format is None:
        from .ckpt_bundle import dump_bundle

        s, dump = None, dump_bundle
        fmt, ext = "bundle", "bundle.npz"
    else:
        s = _serializer(state, format)
        dump, fmt, ext = s.dump, s.format, s.ext
    folder = checkpoint_dir(root, run_id, create=True)
    assert folder is not None
    entries = _entries(folder)
    seq = entries[-1][0] + 1 if entries else 1
    data = folder / f"ckpt-{seq:09d}.state.{ext}"
    atomic_write(data, lambda p: dump(state, p))
    entry = {
        "seq": seq,
        "file": data.name,
        "format": fmt,
        "size": data.stat().st_size,
        "sha256": sha256_file(data),
        "generators": generators,
        "captured": captured,
    }
    text = json.dumps(seal_json(entry), allow_nan=True, separators=(",", ":"))
    atomic_write_text(folder / f"ckpt-{seq:09d}.json", text)
    for old_seq, path in entries[: max(0, len(entries) + 1 - keep)]:
        _remove(folder, old_seq, path)
    return seq


def _remove(folder: Path, seq: int, entry: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        entry.unlink()  # the entry first: a half-removed checkpoint is not offered
    for p in folder.glob(f"ckpt-{seq:09d}.*"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _load(folder: Path, entry: dict[str, Any], allow_pickle: bool) -> Any:
    from ..store.checksum import sha256_file
    from ..store.paths import check_name

    name = check_name(entry.get("file"), "checkpoint file", folder)
    path = folder / name
    if sha256_file(path) != entry.get("sha256"):
        raise ValueError("its sha256 does not match its index entry")
    if entry.get("format") == "bundle":
        from .ckpt_bundle import load_bundle

        return load_bundle(path)
    s = get_serializer(str(entry.get("format")))
    if s.unsafe and not allow_pickle:
        raise UnsafePickleError(
            f"checkpoint {path} is a pickle: loading it can run code from the file, so it is "
            "refused; if you trust this store, call capture.restore(allow_pickle=True)"
        )
    return s.load(path)


def latest(root: Path, run_id: str, *, allow_pickle: bool = False) -> Checkpoint | None:
    """The newest readable checkpoint of a run (damaged ones quarantined), or None."""
    from ..store.checksum import read_sealed_json
    from ..store.layout import Layout
    from ..store.paths import quarantine

    folder = checkpoint_dir(root, run_id, create=False)
    if folder is None:
        return None
    consequence = "the run continues from the checkpoint before it (or from the start)"
    for seq, path in reversed(_entries(folder)):
        try:
            entry, why = read_sealed_json(path)
            if entry is None:
                raise ValueError(why)
            state = _load(folder, entry, allow_pickle)
        except UnsafePickleError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, FileNotFoundError) and exc.filename == str(path):
                continue  # removed meanwhile (a newer checkpoint replaced it)
            for p in sorted(folder.glob(f"ckpt-{seq:09d}.*"), key=lambda q: q != path):
                quarantine(Layout(root), p, f"checkpoint: {exc}", consequence=consequence)
            continue
        return Checkpoint(seq, state, entry.get("generators") or {}, entry.get("captured") or {})
    return None


def discard(root: Path, run_id: str) -> None:
    """Delete a run's checkpoints (it succeeded: nothing will continue from them)."""
    folder = checkpoint_dir(root, run_id, create=False)
    if folder is None:
        return
    for seq, path in _entries(folder):
        _remove(folder, seq, path)
    with contextlib.suppress(OSError):
        os.rmdir(folder)
