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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
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


def normalize_param(value: Any, path: str) -> Any:
    """Return ``value`` as plain JSON-like Python data, or raise :class:`ParamError`.

    numpy scalars become Python scalars and numpy arrays / tuples become lists.
    ``path`` names the key for error messages (``"model.layers[2]"``).
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):  # also numpy.str_ and str enums: keep the plain text
        return value if type(value) is str else str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ParamError(
                    f"parameter {path!r} has a key {k!r} of type {_describe(k)}; "
                    f"parameter dict keys must be strings (write {str(k)!r} instead), "
                    "so that {1: ...} and {'1': ...} never collide silently"
                )
            out[k] = normalize_param(v, f"{path}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [normalize_param(v, f"{path}[{i}]") for i, v in enumerate(value)]
    mod = type(value).__module__
    if mod == "numpy":
        import numpy as np

        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            return float(value)
        if isinstance(value, np.str_):
            return str(value)
        if isinstance(value, np.ndarray) and value.ndim <= 2 and value.size <= 10_000:
            return normalize_param(value.tolist(), path)
    raise ParamError(
        f"parameter {path!r} has a value of type {_describe(value)} ({value!r:.60}), which "
        "is not JSON-like; params may hold str, int, float, bool, None, lists and dicts "
        "with string keys (numpy scalars are converted). Pass a plain value, e.g. its "
        "name or str(value), and rebuild the object inside the operation"
    )


def normalize_params(params: Mapping[str, Any], where: str = "params") -> dict[str, Any]:
    """Normalize one parameter dict (see :func:`normalize_param`)."""
    if not isinstance(params, Mapping):
        raise ParamError(f"{where} must be a dict of parameter values, got {_describe(params)}")
    return normalize_param(params, where.rstrip(".")) if params else {}


def _fingerprint_value(value: Any, path: str) -> Any:
    """Turn a context value into hashable canonical data (arrays hashed by content)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ContextError(
                    f"context key {k!r} at {path!r} is a {_describe(k)}; context keys "
                    "must be strings"
                )
            out[k] = _fingerprint_value(v, f"{path}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_fingerprint_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"__bytes__": hashlib.sha256(bytes(value)).hexdigest()}
    fp = getattr(value, "fingerprint", None)
    if isinstance(fp, str):
        return {"__fingerprint__": fp, "type": type(value).__qualname__}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {"__dataclass__": type(value).__qualname__, **_fingerprint_value(fields, path)}
    mod = type(value).__module__.split(".")[0]
    if mod == "numpy":
        import numpy as np

        if isinstance(value, np.generic):
            return _fingerprint_value(value.item(), path)
        if isinstance(value, np.ndarray) and value.dtype != object:
            h = hashlib.sha256(np.ascontiguousarray(value).view(np.uint8).data)
            return {
                "__ndarray__": h.hexdigest(),
                "dtype": value.dtype.str,
                "shape": list(value.shape),
            }
    if mod == "pandas":
        import pandas as pd

        if isinstance(value, (pd.DataFrame, pd.Series, pd.Index)):
            hashed = pd.util.hash_pandas_object(value, index=True).to_numpy()
            cols = list(map(str, getattr(value, "columns", [])))
            return {"__pandas__": hashlib.sha256(hashed.tobytes()).hexdigest(), "columns": cols}
    import os

    if isinstance(value, os.PathLike):
        return {"__path__": os.fspath(value)}
    raise ContextError(
        f"context value {path!r} of type {_describe(value)} cannot be fingerprinted; "
        "contexts may hold JSON-like data, bytes, numpy arrays, pandas objects, paths and "
        "@metalab.context_spec instances. Give the object a `fingerprint` string attribute, "
        "or put what identifies it (a path, a version) in the context instead"
    )


def fingerprint(value: Any, path: str = "context") -> str:
    """Stable content hash (hex sha256) of a context-like value."""
    return sha256_hex(canonical_json(_fingerprint_value(value, path)))


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
