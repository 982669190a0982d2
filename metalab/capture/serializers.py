"""Artifact serializers: one per type, chosen by type or by ``format=``.

Built-in formats, tried in this order when no ``format=`` is given:

- ``npy`` (``.npy``): numpy arrays and scalars, not ``dtype=object``; loads with
  ``allow_pickle=False``.
- ``parquet`` (``.parquet``): pandas DataFrame and Series, pyarrow Table; loads as the
  same type.
- ``bin`` (``.bin``): ``bytes``, ``bytearray``, ``memoryview``; loads as ``bytes``.
- ``txt`` (``.txt``): ``str``, UTF-8, newlines kept exactly.
- ``json`` (``.json``): dicts with string keys, lists, tuples, numbers (numpy scalars
  too), bools, None; NaN and infinities are kept.
- ``png`` / ``svg`` / ``pdf``: matplotlib figures; load as ``bytes`` (``str`` for svg).
- ``pickle`` (``.pkl``): anything, only with ``format="pickle"``; loading needs
  ``allow_pickle=True``.

Register your own with :func:`register_serializer`; user formats are tried first::

    metalab.register_serializer(
        "torch", ext="pt", handles=torch.Tensor,
        dump=lambda obj, path: torch.save(obj, path),
        load=lambda path: torch.load(path, weights_only=True),
    )
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CaptureError, UnsafePickleError, UnsupportedArtifactError

__all__ = [
    "Serializer",
    "find_serializer",
    "get_serializer",
    "install_serializers",
    "load_artifact",
    "register_serializer",
    "user_serializers",
]

_SAFE_EXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
_SAFE_FORMAT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KIND_KEY = b"metalab.kind"


@dataclass(frozen=True)
class Serializer:
    """How one kind of object is written to and read from a file.

    Attributes
    ----------
    format
        The name used in ``format=`` and recorded in the artifact manifest.
    ext
        The file extension (without the dot).
    handles
        ``handles(obj)`` is True for objects this format saves when no format is given.
    dump, load
        ``dump(obj, path)`` writes the file; ``load(path)`` returns the object.
    unsafe
        Loading may run code from the file (pickle): refused unless ``allow_pickle=True``.
    """

    format: str
    ext: str
    handles: Callable[[Any], bool]
    dump: Callable[[Any, Path], None]
    load: Callable[[Path], Any]
    unsafe: bool = False
    builtin: bool = False


_REGISTRY: dict[str, Serializer] = {}
_ORDER: list[str] = []


def _as_predicate(handles: Any) -> Callable[[Any], bool]:
    if isinstance(handles, type) or (
        isinstance(handles, tuple) and handles and all(isinstance(t, type) for t in handles)
    ):
        types = handles

        def is_instance(obj: Any) -> bool:
            return isinstance(obj, types)

        return is_instance
    if callable(handles):
        return handles  # type: ignore[no-any-return]
    raise CaptureError(
        f"register_serializer(handles=...) takes a type, a tuple of types or a function "
        f"obj -> bool, got {handles!r}"
    )


def register_serializer(
    format: str,
    *,
    ext: str,
    handles: type | tuple[type, ...] | Callable[[Any], bool],
    dump: Callable[[Any, Path], None],
    load: Callable[[Path], Any],
    unsafe: bool = False,
) -> Serializer:
    """Add (or replace) an artifact format. User formats are tried before built-in ones.

    Parameters
    ----------
    format
        Name of the format (``capture.artifact(name, obj, format=...)``).
    ext
        File extension, e.g. ``"pt"``: letters, digits, ``.``, ``_``, ``-``.
    handles
        A type (or tuple of types) whose instances use this format by default, or a
        function ``obj -> bool``.
    dump
        ``dump(obj, path)`` writes ``obj`` to the file ``path``.
    load
        ``load(path)`` reads it back.
    unsafe
        True when loading can run code from the file; ``run.artifact`` then refuses to
        load it unless called with ``allow_pickle=True``.

    Returns
    -------
    Serializer

    Notes
    -----
    The formats registered when ``metalab.run`` starts travel with the sweep to every
    worker, so a format registered in a script also works on a cluster.

    Examples
    --------
    >>> class Point:
    ...     def __init__(self, x, y):
    ...         self.x, self.y = x, y
    >>> s = register_serializer(
    ...     "point", ext="point.json", handles=Point,
    ...     dump=lambda p, path: path.write_text(f"[{p.x}, {p.y}]"),
    ...     load=lambda path: Point(*json.loads(path.read_text())),
    ... )
    >>> find_serializer(Point(1, 2)).format
    'point'
    """
    if not isinstance(format, str) or not _SAFE_FORMAT.match(format):
        raise CaptureError(
            f"serializer format must be a short plain name like 'torch' (letters, digits, "
            f"'.', '_', '-'), got {format!r}"
        )
    if not isinstance(ext, str) or not _SAFE_EXT.match(ext.lstrip(".")) or ".." in ext:
        raise CaptureError(
            f"serializer ext must be a plain file extension like 'pt' or 'point.json' "
            f"(letters, digits, '.', '_', '-'; no path separators), got {ext!r}"
        )
    if not callable(dump) or not callable(load):
        raise CaptureError("register_serializer needs dump(obj, path) and load(path) functions")
    s = Serializer(format, ext.lstrip("."), _as_predicate(handles), dump, load, bool(unsafe))
    if format in _REGISTRY:
        _ORDER.remove(format)
    _REGISTRY[format] = s
    _ORDER.insert(0, format)
    return s


def user_serializers() -> tuple[Serializer, ...]:
    """The formats registered with :func:`register_serializer`, in lookup order."""
    return tuple(_REGISTRY[f] for f in _ORDER if not _REGISTRY[f].builtin)


def install_serializers(serializers: tuple[Serializer, ...]) -> None:
    """Register formats shipped from the driver (on a worker) unless already present."""
    for s in reversed(serializers):
        if _REGISTRY.get(s.format) is not s:
            if s.format in _REGISTRY:
                _ORDER.remove(s.format)
            _REGISTRY[s.format] = s
            _ORDER.insert(0, s.format)


def _mod(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


def _is_numpy_scalar(obj: Any) -> bool:
    return _mod(obj) == "numpy" and getattr(obj, "ndim", None) == 0 and hasattr(obj, "item")


def _is_jsonable(obj: Any, depth: int = 0) -> bool:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return True
    if depth > 100:
        return False
    if isinstance(obj, (list, tuple)):
        return all(_is_jsonable(v, depth + 1) for v in obj)
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _is_jsonable(v, depth + 1) for k, v in obj.items())
    if _is_numpy_scalar(obj):
        return isinstance(obj.item(), (bool, int, float, str))
    return False


def _is_array(obj: Any) -> bool:
    return _mod(obj) == "numpy" and hasattr(obj, "dtype") and hasattr(obj, "shape")


def _npy_dump(obj: Any, path: Path) -> None:
    import numpy as np

    arr = np.asarray(obj)
    if arr.dtype.hasobject:
        raise UnsupportedArtifactError(
            "numpy arrays of dtype=object cannot be saved safely as .npy; convert them to a "
            "numeric or string dtype, or pass format='pickle' explicitly"
        )
    with open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def _npy_load(path: Path) -> Any:
    import numpy as np

    return np.load(path, allow_pickle=False)


def _json_default(obj: Any) -> Any:
    if _is_numpy_scalar(obj):
        return obj.item()
    raise UnsupportedArtifactError(
        f"{type(obj).__qualname__} is not JSON serializable; convert it, or save it with "
        "another format (e.g. format='pickle')"
    )


def _json_dump(obj: Any, path: Path) -> None:
    text = json.dumps(obj, ensure_ascii=False, allow_nan=True, default=_json_default)
    path.write_bytes(text.encode("utf-8"))


def _json_load(path: Path) -> Any:
    return json.loads(path.read_bytes().decode("utf-8"))


def _is_tabular(obj: Any) -> bool:
    name = type(obj).__name__
    return (_mod(obj) == "pandas" and name in ("DataFrame", "Series")) or (
        _mod(obj) == "pyarrow" and name == "Table"
    )


def _parquet_dump(obj: Any, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if _mod(obj) == "pandas":
        import pandas as pd

        if isinstance(obj, pd.Series):
            name = obj.name
            meta = json.dumps({"kind": "series", "name": name if _is_jsonable(name) else str(name)})
            col = str(name) if name is not None else "value"
            table = pa.Table.from_pandas(obj.to_frame(name=col), preserve_index=True)
        else:
            meta = json.dumps({"kind": "dataframe"})
            table = pa.Table.from_pandas(obj, preserve_index=True)
    elif isinstance(obj, pa.Table):
        meta = json.dumps({"kind": "table"})
        table = obj
    else:
        raise UnsupportedArtifactError(
            f"format 'parquet' saves pandas DataFrame/Series and pyarrow Table objects, got "
            f"{type(obj).__qualname__}"
        )
    md = dict(table.schema.metadata or {})
    md[_KIND_KEY] = meta.encode()
    pq.write_table(table.replace_schema_metadata(md), path)


def _parquet_load(path: Path) -> Any:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    md = table.schema.metadata or {}
    kind = json.loads(md[_KIND_KEY]) if _KIND_KEY in md else {}
    if kind.get("kind") == "table" or (not kind and table.schema.pandas_metadata is None):
        md.pop(_KIND_KEY, None)
        return table.replace_schema_metadata(md or None)
    df = table.to_pandas()
    if kind.get("kind") == "series":
        s = df.iloc[:, 0]
        s.name = kind.get("name")
        return s
    return df


def _figure_dump(fmt: str) -> Callable[[Any, Path], None]:
    def dump(fig: Any, path: Path) -> None:
        fig.savefig(path, format=fmt)

    return dump


def _bytes_dump(obj: Any, path: Path) -> None:
    path.write_bytes(bytes(obj))


def _bytes_load(path: Path) -> bytes:
    return path.read_bytes()


def _text_dump(obj: Any, path: Path) -> None:
    path.write_bytes(obj.encode("utf-8"))  # bytes: newlines kept exactly as given


def _text_load(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


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


def _never(obj: Any) -> bool:
    return False


_BUILTIN = [
    Serializer("npy", "npy", _is_array, _npy_dump, _npy_load),
    Serializer("parquet", "parquet", _is_tabular, _parquet_dump, _parquet_load),
    Serializer(
        "bin",
        "bin",
        lambda o: isinstance(o, (bytes, bytearray, memoryview)),
        _bytes_dump,
        _bytes_load,
    ),
    Serializer("txt", "txt", lambda o: isinstance(o, str), _text_dump, _text_load),
    Serializer("json", "json", _is_jsonable, _json_dump, _json_load),
    Serializer("png", "png", _is_figure, _figure_dump("png"), _bytes_load),
    Serializer("svg", "svg", _is_figure, _figure_dump("svg"), _text_load),
    Serializer("pdf", "pdf", _is_figure, _figure_dump("pdf"), _bytes_load),
    Serializer("pickle", "pkl", _never, _pickle_dump, _pickle_load, unsafe=True),
]
for _s in _BUILTIN:
    _s = Serializer(_s.format, _s.ext, _s.handles, _s.dump, _s.load, _s.unsafe, builtin=True)
    _REGISTRY[_s.format] = _s
    _ORDER.append(_s.format)

#: Formats whose ``handles`` check also applies when the format is given explicitly.
STRICT_FORMATS = frozenset({"npy", "parquet", "bin", "txt", "json", "png", "svg", "pdf"})


def get_serializer(fmt: str) -> Serializer:
    """The serializer registered under ``fmt``."""
    try:
        return _REGISTRY[fmt]
    except (KeyError, TypeError):
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
            f"artifact {path.name!r} is stored as {fmt!r}: loading it can run arbitrary code "
            "from the file (unpickling executes whatever the file says), so it is refused by "
            "default. If you trust whoever wrote this store, call "
            "run.artifact(name, allow_pickle=True)"
        )
    return s.load(path)
