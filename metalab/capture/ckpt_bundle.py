"""A checkpoint state that mixes kinds (``{"epoch": 3, "w": array}``) as one ``.npz``.

Arrays, bytes and tables are pulled out of the nested dicts and lists into the ``.npz``
members (tables as Parquet bytes); what remains is JSON, stored as one more member.
Loading uses ``allow_pickle=False``: nothing in the file can run code.  Tuples come back
as lists, as in JSON.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from ..errors import UnsupportedArtifactError

__all__ = ["dump_bundle", "is_bundle_state", "load_bundle"]

_STRUCTURE = "__structure__"
_TAG = "__metalab__"


def _module(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


def is_bundle_state(state: Any) -> bool:
    """A dict, list or tuple (saved as a bundle when it is not plain JSON)."""
    return isinstance(state, (dict, list, tuple))


def _pack(obj: Any, arrays: dict[str, Any], where: str) -> Any:
    import numpy as np

    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str) or k == _TAG:
                raise UnsupportedArtifactError(
                    f"checkpoint: dict keys must be strings (not {_TAG!r}), got {k!r} at {where}"
                )
        return {k: _pack(v, arrays, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_pack(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
    key = f"m{len(arrays)}"
    if _module(obj) == "numpy" and hasattr(obj, "dtype"):
        arr = np.asarray(obj)
        if arr.dtype.hasobject:
            raise UnsupportedArtifactError(
                f"checkpoint: the array at {where} has dtype=object; convert it to a numeric "
                "or string dtype, or pass format='pickle'"
            )
        if arr.ndim == 0:
            return obj.item()
        arrays[key] = arr
        return {_TAG: "array", "key": key}
    if isinstance(obj, (bytes, bytearray, memoryview)):
        arrays[key] = np.frombuffer(bytes(obj), dtype=np.uint8)
        return {_TAG: "bytes", "key": key}
    from .serializers import _is_tabular, _parquet_dump

    if _is_tabular(obj):
        buf = io.BytesIO()
        _parquet_dump(obj, buf)  # type: ignore[arg-type]  # pyarrow writes to files too
        arrays[key] = np.frombuffer(buf.getvalue(), dtype=np.uint8)
        return {_TAG: "table", "key": key}
    raise UnsupportedArtifactError(
        f"checkpoint: cannot save {type(obj).__module__}.{type(obj).__qualname__} at {where}; "
        "states hold dicts and lists of numbers and strings, numpy arrays, pandas or pyarrow "
        "tables and bytes (or pass format='pickle' for anything)"
    )


def _unpack(obj: Any, members: Any) -> Any:
    if isinstance(obj, list):
        return [_unpack(v, members) for v in obj]
    if not isinstance(obj, dict):
        return obj
    kind = obj.get(_TAG)
    if kind is None:
        return {k: _unpack(v, members) for k, v in obj.items()}
    data = members[obj["key"]]
    if kind == "array":
        return data
    if kind == "bytes":
        return data.tobytes()
    import pyarrow as pa

    from .serializers import _parquet_load

    return _parquet_load(pa.BufferReader(data.tobytes()))


def dump_bundle(state: Any, path: Path) -> None:
    """Write ``state`` (nested dicts/lists with arrays, bytes, tables) as one ``.npz``."""
    import numpy as np

    arrays: dict[str, Any] = {}
    structure = _pack(state, arrays, "state")
    text = json.dumps(structure, allow_nan=True).encode("utf-8")
    arrays[_STRUCTURE] = np.frombuffer(text, dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, allow_pickle=False, **arrays)


def load_bundle(path: Path) -> Any:
    """Read a state written by :func:`dump_bundle` (no pickle)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as npz:
        members = {k: npz[k] for k in npz.files}
    structure = json.loads(members.pop(_STRUCTURE).tobytes().decode("utf-8"))
    return _unpack(structure, members)
