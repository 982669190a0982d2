"""Text from a store made safe to show: on a terminal, and in matplotlib figures.

Everything in a store (param values, metric names, error messages, file names) may
come from anyone who could write to it, so it is shown as inert text:

* :func:`safe_text` escapes control characters (an ``ESC [`` sequence can rewrite the
  terminal, retitle the window or hide lines; ``\\r`` can overwrite a line) and
  invisible bidirectional overrides (which reorder what is shown), as ``\\x1b`` or
  ``\\u202e``.
* :func:`plot_text` also escapes ``$``, which matplotlib would parse as mathtext (a
  ``$\\foo$`` in a name makes drawing the figure fail).

Values are shown one way everywhere text is printed (tables, summaries, legends):
:func:`fmt_cell` writes a float to 6 significant digits and a missing value (None,
NaN, ``pd.NA``, ``NaT``) as :data:`MISSING`, ``-``; :func:`fmt_short` writes a float
to 3 (``gamma=1.78e-05`` in a legend); :func:`frame_text` prints a pandas frame.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MISSING", "fmt_cell", "fmt_short", "frame_text", "is_missing", "plot_text", "safe_text"]

#: How a missing value (None, NaN, pd.NA, NaT) is printed in every table and summary.
MISSING = "-"

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


def is_missing(value: Any) -> bool:
    """True for None, NaN, ``pd.NA`` and ``NaT`` (and False for anything else)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, (str, bytes, int, list, dict, tuple)):
        return False
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError, ImportError):
        return False  # arrays and other containers are values, not missing


def fmt_cell(value: Any, digits: int = 6) -> str:
    """A value as printed text: floats to ``digits`` significant digits, missing as ``-``.

    >>> fmt_cell(None), fmt_cell(float("nan")), fmt_cell(9.999999999999999e-06), fmt_cell("a")
    ('-', '-', '1e-05', 'a')
    """
    if is_missing(value):
        return MISSING
    if isinstance(value, float) or type(value).__name__ in ("float32", "float64"):
        return f"{float(value):.{digits}g}"
    return safe_text(value, keep_newlines=False)


def fmt_short(value: Any) -> str:
    """A value for a legend or label: floats to 3 significant digits (``1.78e-05``)."""
    return fmt_cell(value, digits=3)


def frame_text(df: pd.DataFrame) -> str:
    """A pandas frame as printed text, without its index, cells by :func:`fmt_cell`.

    >>> import pandas as pd
    >>> print(frame_text(pd.DataFrame({"x": [1.5, None], "y": pd.array([1, None], "Int64")})))
      x  y
    1.5  1
      -  -
    """
    cells = {str(c): [fmt_cell(v) for v in df[c].tolist()] for c in df.columns}
    header = list(cells)
    widths = [max([len(h), *(len(v) for v in cells[h])]) for h in header]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    for i in range(len(df)):
        row = (cells[h][i].rjust(w) for h, w in zip(header, widths, strict=True))
        lines.append("  ".join(row))
    return "\n".join(lines)
