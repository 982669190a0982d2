"""Name rules for metrics, artifacts and figures: safe as a file name on any OS.

A name becomes part of a file name inside the store (``artifacts/<run_id>/<name>.<ext>``),
so it must be a plain name: never a path, never a way out of the store.
"""

from __future__ import annotations

import re
import unicodedata

from ..errors import CaptureError, CaptureTypeError

__all__ = ["MAX_NAME_BYTES", "check_name"]

MAX_NAME_BYTES = 200
_OK: set[str] = set()
# Device names, with any extension ("nul.tar.gz") and spaces before it ("con .txt").
_DEVICE = r"con|prn|aux|nul|conin\$|conout\$|(?:com|lpt)[0-9\u00b9\u00b2\u00b3]"
_WINDOWS_RESERVED = re.compile(rf"^({_DEVICE}) *(\..*)?$", re.IGNORECASE)
_WINDOWS_FORBIDDEN = '<>"|?*'
_BAD_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
_ALLOWED_FORMAT_CHARS = {"\u200c", "\u200d"}  # zero-width (non-)joiner: scripts and emoji


def _problem(name: str) -> str | None:
    if not name:
        return "it is empty"
    if "/" in name or "\\" in name:
        return "it contains a path separator ('/' or '\\')"
    if name.startswith(".."):
        return "it starts with '..' (the parent folder)"
    if name.startswith("."):
        return "it starts with '.' (hidden files and the store's temp files do)"
    for c in name:
        if c not in _ALLOWED_FORMAT_CHARS and unicodedata.category(c) in _BAD_CATEGORIES:
            return f"it contains the control or invisible character U+{ord(c):04X}"
    if ":" in name:
        return "it contains ':' (drive letters such as 'C:' and alternate streams)"
    bad = [c for c in _WINDOWS_FORBIDDEN if c in name]
    if bad:
        return f'it contains {bad[0]!r}; Windows forbids <>"|?* in file names'
    if name != name.strip():
        return "it starts or ends with whitespace"
    if name.endswith("."):
        return "it ends with '.', which Windows drops from file names"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"it is longer than {MAX_NAME_BYTES} bytes in UTF-8"
    if unicodedata.normalize("NFC", name) != name:
        return "it is not in Unicode NFC form; pass unicodedata.normalize('NFC', name)"
    if _WINDOWS_RESERVED.match(name):
        return "it is a reserved device name on Windows"
    return None


def check_name(name: object, kind: str = "name") -> str:
    """Return ``name`` if it is a safe metric, artifact or figure name.

    Rules: a non-empty string of at most 200 UTF-8 bytes; no path separators (``/``,
    ``\\``); not starting with ``.`` (so never ``.`` or ``..``); no control or invisible
    characters; no ``:`` (so no absolute Windows paths) nor ``<>"|?*``; no leading or
    trailing spaces, no trailing ``.``; Unicode in NFC form; not a Windows device name
    (``CON``, ``NUL``, ``COM1``, ``LPT1``, ... with any extension). Unicode letters are
    welcome.

    Raises
    ------
    CaptureError
        (a ``ValueError``) naming the rule the name breaks.

    Examples
    --------
    >>> check_name("val_loss"), check_name("précision"), check_name("损失")
    ('val_loss', 'précision', '损失')
    >>> check_name("../secret")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    metalab.errors.CaptureError: unsafe name '../secret': it contains a path separator ...
    """
    if type(name) is str and name in _OK:
        return name
    if not isinstance(name, str):
        raise CaptureTypeError(f"{kind} must be a string, got {type(name).__name__} {name!r:.60}")
    name = str(name)
    problem = _problem(name)
    if problem:
        raise CaptureError(
            f"unsafe {kind} {name!r}: {problem}. Names become file names inside the store, "
            "so they must be plain names such as 'train_loss' or 'predictions_v2'"
        )
    if len(_OK) < 100_000:
        _OK.add(name)
    return name
