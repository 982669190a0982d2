"""Text from a store made safe to show: on a terminal, and in matplotlib figures.

Everything in a store (param values, metric names, error messages, file names) may
come from anyone who could write to it, so it is shown as inert text:

* :func:`safe_text` escapes control characters (an ``ESC [`` sequence can rewrite the
  terminal, retitle the window or hide lines; ``\\r`` can overwrite a line) and
  invisible bidirectional overrides (which reorder what is shown), as ``\\x1b`` or
  ``\\u202e``.
* :func:`plot_text` also escapes ``$``, which matplotlib would parse as mathtext (a
  ``$\\foo$`` in a name makes drawing the figure fail).
"""

from __future__ import annotations

import re

__all__ = ["plot_text", "safe_text"]

# C0 and C1 controls (DEL included), bidi marks/overrides/isolates, zero-width space,
# BOM, and lone surrogates (which cannot even be encoded for printing).
_UNSAFE = (
    "\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff"
)
_UNSAFE_KEEP_LINES = re.compile(f"[{_UNSAFE}]")
_UNSAFE_ONE_LINE = re.compile(f"[\t\n{_UNSAFE}]")


def _escape(m: re.Match[str]) -> str:
    o = ord(m.group())
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


def safe_text(text: object, *, keep_newlines: bool = True) -> str:
    """``str(text)`` with control and invisible characters escaped (``\\x1b``).

    Newlines and tabs are kept unless ``keep_newlines=False``.

    Examples
    --------
    >>> safe_text("ok\\x1b[2Jgone")
    'ok\\\\x1b[2Jgone'
    >>> safe_text("a\\nb", keep_newlines=False)
    'a\\\\x0ab'
    """
    s = str(text)
    pattern = _UNSAFE_KEEP_LINES if keep_newlines else _UNSAFE_ONE_LINE
    return pattern.sub(_escape, s) if pattern.search(s) else s


def plot_text(text: object) -> str:
    """Text for a matplotlib label, title or tick: one line, no mathtext.

    Examples
    --------
    >>> plot_text("cost $x$")
    'cost \\\\$x\\\\$'
    """
    return safe_text(text, keep_newlines=False).replace("$", r"\$")
