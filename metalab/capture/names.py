"""Name rules for metrics, artifacts and figures: safe as a file name on any OS."""

from __future__ import annotations

import unicodedata

from ..errors import CaptureError

_OK: set[str] = set()
_MAX_LEN = 200


def check_name(name: object, kind: str = "name") -> str:
    """Return ``name`` if it is a safe metric/artifact name, else raise :class:`CaptureError`.

    Rules: a non-empty string of at most 200 characters, no ``/`` or ``\\``, not ``.``
    or ``..`` (nor starting with ``..``), no control characters, no leading/trailing
    spaces, no ``:`` (drive letters, NTFS streams).  Safe Unicode letters are fine.
    """
    if name in _OK:
        return name  # type: ignore[return-value]
    if not isinstance(name, str):
        raise CaptureError(f"{kind} must be a string, got {type(name).__name__} {name!r}")
    problem = None
    if not name:
        problem = "it is empty"
    elif len(name) > _MAX_LEN:
        problem = f"it is longer than {_MAX_LEN} characters"
    elif "/" in name or "\\" in name:
        problem = "it contains a path separator ('/' or '\\')"
    elif name.startswith(".."):
        problem = "it starts with '..' (parent folder)"
    elif name == ".":
        problem = "it is '.'"
    elif ":" in name:
        problem = "it contains ':' (drive letters and alternate streams are not allowed)"
    elif name != name.strip():
        problem = "it starts or ends with whitespace"
    elif any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in name):
        problem = "it contains control or invisible characters"
    if problem:
        raise CaptureError(
            f"unsafe {kind} {name!r}: {problem}. Names become file names inside the store, "
            "so they must be plain names such as 'train_loss' or 'predictions_v2'"
        )
    if len(_OK) < 100_000:
        _OK.add(name)
    return name
