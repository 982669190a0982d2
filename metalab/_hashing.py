"""Canonical JSON, parameter normalization and stable content hashes.

Run identity recipe (documented in ``docs/concepts.md``)::

    run_id = sha256(canonical_json({
        "context": <context fingerprint>,
        "experiment": <experiment name>,
        "experiment_version": <experiment version>,
        "operation": <operation name>,
        "operation_version": <operation version>,
        "params": <normalized params>,
        "seed": {"base": <base seed>, "replicate": <replicate index>},
    })).hexdigest()[:32]

``canonical_json`` is ``json.dumps`` with sorted keys, no whitespace, UTF-8 kept
as is, and NaN/Infinity allowed.  Nothing depends on Python's salted ``hash()``.

The context fingerprint is ``sha256(canonical_json(encoded context))``: JSON-like values
are encoded as themselves (floats NaN/inf included), other values as tagged dicts
(``{"__path__": ...}``, ``{"__bytes__": <sha256>}``, ...), and a user dict that uses a
tag as a key is wrapped as ``{"__mapping__": {...}}``, so no two values share an
encoding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .errors import ContextError, ParamError

RUN_ID_LENGTH = 32

_dumps = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
).encode


def canonical_json(obj: Any) -> str:
    """Serialize ``obj`` (already normalized) to canonical JSON text."""
    return _dumps(obj)


def sha256_hex(text: str) -> str:
    """Hex sha256 of a text."""
    return hashlib.sha256(text.encode()).hexdigest()


def _describe(value: Any) -> str:
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else t.__qualname__


#: Deepest nesting of dicts and lists in params and contexts (deeper, or a value that
#: contains itself, is refused: it would otherwise end in a raw ``RecursionError``).
MAX_DEPTH = 100
#: The results table stores integer params as 64-bit integers.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _short(path: str) -> str:
    return path if len(path) <= 80 else f"{path[:40]}...{path[-30:]}"


def check_param_key(key: str, path: str) -> None:
    """Refuse a param key that would merge with a nested one in the results table.

    Nested dicts become dotted columns (``{"a": {"b": 1}}`` -> ``params.a.b``), so a key
    that contains a dot would share that column with the nested form.
    """
    if "." in key:
        fix = key.replace(".", "_")
        raise ParamError(
            f"parameter key {key!r} (in {_short(path)!r}) contains '.', which the results "
            "table uses for nested dicts: {'a.b': 1} and {'a': {'b': 1}} would both become "
            f"the column 'params.a.b'. Nest it ({{'a': {{'b': ...}}}}) or use another "
            f"separator, e.g. {fix!r}"
        )


def normalize_param(value: Any, path: str, *, _depth: int = 0, _column: bool = True) -> Any:
    """Return ``value`` as plain JSON-like Python data, or raise :class:`ParamError`.

    numpy scalars become Python scalars and numpy arrays / tuples become lists.
    ``path`` names the key for error messages (``"model.layers[2]"``). Values that
    become table columns (not inside a list) must have dot-free keys and fit int64.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):  # also numpy.str_ and str enums: keep the plain text
        return value if type(value) is str else str.__str__(value)
    if isinstance(value, int):
        if _column and not INT64_MIN <= value <= INT64_MAX:
            raise ParamError(
                f"parameter {_short(path)!r} is {int(value)}, outside the 64-bit integer "
                "range of the results table (-2**63 .. 2**63-1), where it would lose "
                f"digits; pass it as a string, e.g. str(value) = '{int(value)}'"
            )
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (Mapping, list, tuple)) and _depth >= MAX_DEPTH:
        raise ParamError(
            f"parameter {_short(path)!r} is nested more than {MAX_DEPTH} levels deep (or "
            "contains itself); flatten it, or pass a name and build the structure inside "
            "the operation"
        )
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ParamError(
                    f"parameter {_short(path)!r} has a key {k!r} of type {_describe(k)}; "
                    f"parameter dict keys must be strings (write {str(k)!r} instead), "
                    "so that {1: ...} and {'1': ...} never collide silently"
                )
            if _column:
                check_param_key(k, path)
            out[k] = normalize_param(v, f"{path}.{k}", _depth=_depth + 1, _column=_column)
        return out
    if isinstance(value, (list, tuple)):
        return [
            normalize_param(v, f"{path}[{i}]", _depth=_depth + 1, _column=False)
            for i, v in enumerate(value)
        ]
    mod = type(value).__module__
    if mod == "numpy":
        import numpy as np

        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.integer):
            return normalize_param(int(value), path, _depth=_depth, _column=_column)
        if isinstance(value, np.floating):
            return float(value)
        if isinstance(value, np.str_):
            return str(value)
        if isinstance(value, np.ndarray) and value.ndim <= 2 and value.size <= 10_000:
            return normalize_param(value.tolist(), path, _depth=_depth, _column=_column)
    raise ParamError(
        f"parameter {_short(path)!r} has a value of type {_describe(value)} "
        f"({value!r:.60}), which is not JSON-like; params may hold str, int, float, bool, "
        "None, lists and dicts with string keys (numpy scalars are converted). Pass a plain "
        "value, e.g. its name or str(value), and rebuild the object inside the operation"
    )


def normalize_params(params: Mapping[str, Any], where: str = "params") -> dict[str, Any]:
    """Normalize one parameter dict (see :func:`normalize_param`)."""
    if not isinstance(params, Mapping):
        raise ParamError(f"{where} must be a dict of parameter values, got {_describe(params)}")
    return normalize_param(params, where.rstrip(".")) if params else {}


# Context encoding --------------------------------------------------------------------
# Values that JSON cannot express are encoded as one-key-tagged dicts ({"__path__": ...}).
# A user mapping that uses one of these keys is wrapped as {"__mapping__": {...}}, so a
# tagged value and a user dict never share an encoding (the encoding is injective), while
# ordinary dicts, lists, strings and numbers keep their plain JSON (and their old
# fingerprints). Add any new tag to RESERVED_KEYS.
RESERVED_KEYS = frozenset(
    {
        "__bytes__",
        "__dataclass__",
        "__fingerprint__",
        "__mapping__",
        "__ndarray__",
        "__pandas__",
        "__path__",
        "__spec__",
    }
)


def _fingerprint_mapping(value: Mapping[Any, Any], path: str, depth: int) -> Any:
    out = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise ContextError(
                f"context key {k!r} at {_short(path)!r} is a {_describe(k)}; context keys "
                "must be strings"
            )
        out[k] = _fingerprint_value(v, f"{path}.{k}", depth + 1)
    return {"__mapping__": out} if not RESERVED_KEYS.isdisjoint(out) else out


def _fingerprint_numpy(value: Any, path: str, depth: int) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return _fingerprint_value(value.item(), path, depth)
    if isinstance(value, np.ndarray) and not value.dtype.hasobject:
        h = hashlib.sha256(np.ascontiguousarray(value).view(np.uint8).data)
        out = {"__ndarray__": h.hexdigest(), "dtype": value.dtype.str, "shape": list(value.shape)}
        if value.dtype.names is not None:  # structured: '|V16' alone would hide the fields
            out["fields"] = repr(value.dtype.descr)
        if isinstance(value, np.ma.MaskedArray):
            out["mask"] = _fingerprint_numpy(np.ma.getmaskarray(value), path, depth)
        return out
    return None


def _fingerprint_pandas(value: Any) -> Any:
    import pandas as pd

    if not isinstance(value, (pd.DataFrame, pd.Series, pd.Index)):
        return None
    hashed = pd.util.hash_pandas_object(value, index=True).to_numpy()
    cols = list(map(str, getattr(value, "columns", [])))
    out: dict[str, Any] = {"__pandas__": hashlib.sha256(hashed.tobytes()).hexdigest()}
    out["columns"] = cols
    # The hash above ignores dtypes (int32 1 == int64 1) and names: add them.
    dtypes = value.dtypes if isinstance(value, pd.DataFrame) else [value.dtype]
    out["kind"] = type(value).__name__
    out["dtypes"] = [str(d) for d in dtypes]
    index = value if isinstance(value, pd.Index) else value.index
    out["names"] = [repr(n) for n in (*index.names, getattr(value, "name", None))]
    return out


def _fingerprint_value(value: Any, path: str, depth: int = 0) -> Any:
    """Turn a context value into hashable canonical data (arrays hashed by content)."""
    if value is None or isinstance(value, (bool, int, str, float)):
        return value  # NaN and infinities stay floats: JSON NaN, never the text "nan"
    if depth >= MAX_DEPTH:
        raise ContextError(
            f"context value {_short(path)!r} is nested more than {MAX_DEPTH} levels deep "
            "(or contains itself); flatten it, or give the object a `fingerprint` string"
        )
    if isinstance(value, Mapping):
        return _fingerprint_mapping(value, path, depth)
    if isinstance(value, (list, tuple)):
        return [_fingerprint_value(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"__bytes__": hashlib.sha256(bytes(value)).hexdigest()}
    fp = getattr(value, "fingerprint", None)
    if isinstance(fp, str):
        return {"__fingerprint__": fp, "type": type(value).__qualname__}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {
            "__dataclass__": type(value).__qualname__,
            **_fingerprint_mapping(fields, path, depth),
        }
    mod = type(value).__module__.split(".")[0]
    out = None
    if mod == "numpy":
        out = _fingerprint_numpy(value, path, depth)
    elif mod == "pandas":
        out = _fingerprint_pandas(value)
    if out is not None:
        return out
    import os

    if isinstance(value, os.PathLike):
        return {"__path__": os.fspath(value)}
    raise ContextError(
        f"context value {_short(path)!r} of type {_describe(value)} cannot be fingerprinted; "
        "contexts may hold JSON-like data, bytes, numpy arrays, pandas objects, paths and "
        "@metalab.context_spec instances. Give the object a `fingerprint` string attribute, "
        "or put what identifies it (a path, a version) in the context instead"
    )


def fingerprint(value: Any, path: str = "context") -> str:
    """Stable content hash (hex sha256) of a context-like value."""
    return sha256_hex(canonical_json(_fingerprint_value(value, path)))


def spec_fingerprint(qualname: str, fields: Mapping[str, Any]) -> str:
    """Fingerprint of a ``@context_spec`` instance: its class name and its fields."""
    doc = {"__spec__": qualname, "fields": _fingerprint_mapping(fields, qualname, 0)}
    return sha256_hex(canonical_json(doc))


def run_id_prefix(
    *,
    context_fp: str,
    experiment: str,
    experiment_version: str,
    operation: str,
    operation_version: str,
) -> str:
    """The canonical JSON text that precedes the params in the run-identity document."""
    head = canonical_json(
        {
            "context": context_fp,
            "experiment": experiment,
            "experiment_version": experiment_version,
            "operation": operation,
            "operation_version": operation_version,
        }
    )
    return head[:-1] + ',"params":'


def run_id_from_parts(prefix: str, params_json: str, base: int, replicate: int) -> str:
    """Fast path of the run id recipe given a precomputed prefix and params JSON."""
    doc = f'{prefix}{params_json},"seed":{{"base":{base},"replicate":{replicate}}}}}'
    return hashlib.sha256(doc.encode()).hexdigest()[:RUN_ID_LENGTH]


def run_ids_for(prefix: str, params_json: list[str], base: int, replicate: int) -> list[str]:
    """:func:`run_id_from_parts` for many configurations of one replicate, in bulk."""
    sha = hashlib.sha256
    head = prefix.encode()
    tail = f',"seed":{{"base":{base},"replicate":{replicate}}}}}'.encode()
    return [sha(head + p.encode() + tail).hexdigest()[:RUN_ID_LENGTH] for p in params_json]


def run_id(
    *,
    context_fp: str,
    experiment: str,
    experiment_version: str,
    operation: str,
    operation_version: str,
    params: dict[str, Any],
    base: int,
    replicate: int,
) -> str:
    """The documented run identity recipe, written out in full (reference for tests)."""
    doc = {
        "context": context_fp,
        "experiment": experiment,
        "experiment_version": experiment_version,
        "operation": operation,
        "operation_version": operation_version,
        "params": params,
        "seed": {"base": base, "replicate": replicate},
    }
    return sha256_hex(canonical_json(doc))[:RUN_ID_LENGTH]
