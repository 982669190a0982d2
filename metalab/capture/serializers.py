"""Artifact serializers: one per type, chosen by type or by ``format=``.

Register your own with :func:`register_serializer`::

    metalab.register_serializer(
        "torch", ext="pt", handles=lambda o: type(o).__module__ == "torch",
        dump=lambda obj, path: torch.save(obj, path),
        load=lambda path: torch.load(path, weights_only=True),
    )
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UnsafePickleError, UnsupportedArtifactError

__all__ = ["Serializer", "find_serializer", "get_serializer", "register_serializer"]


@dataclass(frozen=True)
class Serializer:
    """How one kind of object is written to and read from a file."""

    format: str
    ext: str
    handles: Callable[[Any], bool]
    dump: Callable[[Any, Path], None]
    load: Callable[[Path], Any]
    unsafe: bool = False


_REGISTRY: dict[str, Serializer] = {}
_ORDER: list[str] = []


def register_serializer(
    format: str,
    *,
    ext: str,
    handles: Callable[[Any], bool],
    dump: Callable[[Any, Path], None],
    load: Callable[[Path], Any],
    unsafe: bool = False,
) -> Serializer:
    """Add (or replace) an artifact format; user formats are tried before built-in ones."""
    s = Serializer(format, ext.lstrip("."), handles, dump, load, unsafe)
    if format in _REGISTRY:
        _ORDER.remove(format)
    _REGISTRY[format] = s
    _ORDER.insert(0, format)
    return s


def _mod(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


def _is_jsonable(obj: Any) -> bool:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return True
    if isinstance(obj, (list, tuple)):
        return all(_is_jsonable(v) for v in obj)
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _is_jsonable(v) for k, v in obj.items())
    return False


def _npy_dump(obj: Any, path: Path) -> None:
    import numpy as np

    if getattr(obj, "dtype", None) is not None and obj.dtype.hasobject:
        raise UnsupportedArtifactError(
            "numpy arrays of dtype=object cannot be saved safely as .npy; convert them to a "
            "numeric or string dtype, or pass format='pickle' explicitly"
        )
    with open(path, "wb") as f:
        np.save(f, obj, allow_pickle=False)


def _npy_load(path: Path) -> Any:
    import numpy as np

    return np.load(path, allow_pickle=False)


def _json_dump(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, allow_nan=True), encoding="utf-8")


def _json_load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _parquet_dump(obj: Any, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if _mod(obj) == "pandas":
        import pandas as pd

        if isinstance(obj, pd.Series):
            obj = obj.to_frame(name=obj.name if obj.name is not None else "value")
        table = pa.Table.from_pandas(obj, preserve_index=True)
    else:
        table = obj
    pq.write_table(table, path)


def _parquet_load(path: Path) -> Any:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if table.schema.pandas_metadata is not None:
        return table.to_pandas()
    return table


def _png_dump(fig: Any, path: Path, fmt: str = "png") -> None:
    fig.savefig(path, format=fmt)


def _bytes_load(path: Path) -> bytes:
    return path.read_bytes()


def _pickle_dump(obj: Any, path: Path) -> None:
    import cloudpickle

    with open(path, "wb") as f:
        cloudpickle.dump(obj, f)


def _pickle_load(path: Path) -> Any:
    import pickle

    with open(path, "rb") as f:
        return pickle.load(f)


def _is_figure(obj: Any) -> bool:
    return _mod(obj) == "matplotlib" and hasattr(obj, "savefig")


_BUILTIN = [
    Serializer("npy", "npy", lambda o: _mod(o) == "numpy" and hasattr(o, "dtype") and hasattr(o, "shape"), _npy_dump, _npy_load),  # noqa: E501
    Serializer("parquet", "parquet",
               lambda o: (_mod(o) == "pandas" and type(o).__name__ in ("DataFrame", "Series"))
               or (_mod(o) == "pyarrow" and type(o).__name__ == "Table"),
               _parquet_dump, _parquet_load),
    Serializer("bin", "bin", lambda o: isinstance(o, (bytes, bytearray, memoryview)),
               lambda o, p: p.write_bytes(bytes(o)), _bytes_load),
    Serializer("txt", "txt", lambda o: isinstance(o, str),
               lambda o, p: p.write_text(o, encoding="utf-8"),
               lambda p: p.read_text(encoding="utf-8")),
    Serializer("json", "json", _is_jsonable, _json_dump, _json_load),
    Serializer("png", "png", _is_figure, _png_dump, _bytes_load),
    Serializer("svg", "svg", _is_figure, lambda f, p: _png_dump(f, p, "svg"),
               lambda p: p.read_text(encoding="utf-8")),
    Serializer("pdf", "pdf", _is_figure, lambda f, p: _png_dump(f, p, "pdf"), _bytes_load),
    Serializer("pickle", "pkl", lambda o: False, _pickle_dump, _pickle_load, unsafe=True),
]
for _s in _BUILTIN:
    _REGISTRY[_s.format] = _s
    _ORDER.append(_s.format)


def get_serializer(fmt: str) -> Serializer:
    """The serializer registered under ``fmt``."""
    try:
        return _REGISTRY[fmt]
    except KeyError:
        raise UnsupportedArtifactError(
            f"unknown artifact format {fmt!r}; known formats: {', '.join(sorted(_REGISTRY))}. "
            "Add one with metalab.register_serializer(...)"
        ) from None


def find_serializer(obj: Any) -> Serializer:
    """The first registered serializer that handles ``obj``."""
    for fmt in _ORDER:
        s = _REGISTRY[fmt]
        if s.handles(obj):
            return s
    raise UnsupportedArtifactError(
        f"no artifact format handles {type(obj).__module__}.{type(obj).__qualname__}; supported: "
        "numpy arrays (.npy), JSON-like dicts/lists/numbers (.json), pandas DataFrame/Series and "
        "pyarrow Table (.parquet), bytes (.bin), str (.txt), matplotlib figures (.png). Convert "
        "the object, register a format with metalab.register_serializer(...), or pass "
        "format='pickle' (loading it will then need allow_pickle=True)"
    )


def load_artifact(fmt: str, path: Path, *, allow_pickle: bool = False) -> Any:
    """Load a stored artifact, refusing pickles unless ``allow_pickle=True``."""
    s = get_serializer(fmt)
    if s.unsafe and not allow_pickle:
        raise UnsafePickleError(
            f"artifact {path.name!r} is a pickle; unpickling runs arbitrary code from the file, "
            "so it is refused by default. If you trust this store, call "
            "run.artifact(name, allow_pickle=True)"
        )
    return s.load(path)
