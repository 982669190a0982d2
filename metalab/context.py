"""Read-only contexts shared by every run of an experiment.

A plain ``dict`` becomes a :class:`FrozenContext` (deeply read-only); a class
decorated with :func:`context_spec` becomes a frozen dataclass.  Both have a stable
``fingerprint`` that enters every run id.

Freezing copies what it can make immutable: dicts become FrozenContexts, lists and
tuples tuples, bytearrays bytes, and numpy arrays read-only copies over an immutable
``bytes`` buffer (so ``setflags(write=True)`` fails). Values it cannot make immutable
(pandas objects, plain dataclasses, numpy subclasses) are *watched*: a pristine copy
of a pandas object (compared with ``.equals``, ~3 ms per million rows) or the digest of
any other value is kept, and :func:`check_context` (called when a sweep is planned and
before every run) raises :class:`ContextError` if one changed in place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from ._hashing import MAX_DEPTH, spec_fingerprint
from ._hashing import fingerprint as _fingerprint
from .errors import ContextError, FrozenContextError

__all__ = ["FrozenContext", "check_context", "context_spec", "freeze_context"]

T = TypeVar("T")

#: (path below the context, watched object, reference: pristine copy or fingerprint)
Watch = tuple[tuple[str, Any, Any], ...]
_WatchList = list[tuple[str, Any, Any]]


def _readonly_array(a: Any) -> Any:
    """A read-only array whose memory cannot be made writable again."""
    import numpy as np

    probe = a.view()
    try:
        probe.setflags(write=True)
        writable = True
    except ValueError:  # the memory itself is read-only (bytes, read-only mmap): share it
        writable = False
    if not writable or a.dtype.hasobject or a.dtype.itemsize == 0:
        view = a.view()
        view.setflags(write=False)
        return view
    # A read-only *view* of writable memory can be made writable again with
    # setflags(write=True); a copy over an immutable bytes object cannot.
    return np.frombuffer(a.tobytes(), dtype=a.dtype).reshape(a.shape)


def _is_spec(value: Any) -> bool:
    return bool(getattr(type(value), "__metalab_context_spec__", False))


def _pandas_meta(value: Any) -> str:
    """What ``.equals`` ignores: types, dtypes and names (as text, so NaN names compare)."""
    import pandas as pd

    index = value if isinstance(value, pd.Index) else value.index
    cols = getattr(value, "columns", None)
    dtypes = list(value.dtypes) if cols is not None else [value.dtype]
    parts = [type(value), dtypes, index.dtype, index.names, getattr(value, "name", None)]
    if cols is not None:
        parts += [cols.dtype, cols.names]
    return repr(parts)


def _watch(value: Any, path: str, watch: _WatchList) -> Any:
    """Record ``value`` (not immutable) for :func:`check_context`; return it."""
    if type(value).__module__.split(".")[0] == "pandas":
        # Hashing a frame costs ~0.7 s per million rows; .equals on a copy ~3 ms.
        ref: Any = (value.copy(deep=True), _pandas_meta(value))
    else:
        ref = _fingerprint(value, f"context{path}")
    watch.append((path, value, ref))
    return value


def _unchanged(value: Any, ref: Any, where: str) -> bool:
    if isinstance(ref, str):
        return _fingerprint(value, where) == ref
    pristine, meta = ref
    return _pandas_meta(value) == meta and bool(value.equals(pristine))


def _freeze(value: Any, path: str, watch: _WatchList, depth: int) -> Any:
    """``value`` made immutable (or watched); ``path`` is relative to the context."""
    if depth >= MAX_DEPTH:
        raise ContextError(
            f"context value {'context' + path:.80} is nested more than {MAX_DEPTH} levels "
            "deep (or contains itself); flatten it"
        )
    if isinstance(value, FrozenContext):
        watch.extend((path + p, o, d) for p, o, d in value._metalab_watch)
        return value
    if isinstance(value, Mapping):
        return _freeze(FrozenContext._make(value, depth + 1), path, watch, depth)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, f"{path}[{i}]", watch, depth + 1) for i, v in enumerate(value))
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if _is_spec(value):
        watch.extend((path + p, o, d) for p, o, d in value.__dict__.get("_metalab_watch", ()))
        return value
    mod = type(value).__module__.split(".")[0]
    if mod == "numpy":
        import numpy as np

        if type(value) in (np.ndarray, np.memmap):
            return _readonly_array(value)
        if isinstance(value, np.ndarray):  # a subclass (masked, matrix): keep it, watched
            view = value.view()
            view.setflags(write=False)
            return _watch(view, path, watch)
    elif mod == "pandas":
        import pandas as pd

        if isinstance(value, (pd.DataFrame, pd.Series, pd.Index)):
            # pandas has no read-only mode: snapshot it (so later changes to the caller's
            # object do not reach the context) and watch the snapshot. With pandas >= 3
            # (copy-on-write) a shallow copy is already an independent snapshot.
            cow = int(pd.__version__.split(".", 1)[0]) >= 3
            return _watch(value.copy(deep=not cow), path, watch)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _watch(value, path, watch)  # its fields may change: watch it
    return value


def check_context(context: Any) -> None:
    """Raise :class:`ContextError` if a watched value of ``context`` changed in place.

    Watched values are those freezing cannot make immutable (pandas objects, plain
    dataclasses); a context without them is checked for free.
    """
    watch: Watch = getattr(context, "_metalab_watch", ())
    for path, obj, ref in watch:
        where = f"context{path}"
        if not _unchanged(obj, ref, where):
            raise ContextError(
                f"{where} ({type(obj).__module__}.{type(obj).__qualname__}) changed after "
                "the experiment was built: something (an operation, or code holding a "
                "reference to it) modified it in place. The context is part of every run "
                "id and must stay as it was: copy before changing (e.g. "
                "df = context['df'].copy()), and build a new Experiment for new data"
            )


class FrozenContext(Mapping[str, Any]):
    """An immutable mapping (items also readable as attributes) with a fingerprint.

    Examples
    --------
    >>> ctx = FrozenContext({"dataset": "mnist", "sizes": [1, 2]})
    >>> ctx["dataset"], ctx.sizes
    ('mnist', (1, 2))
    >>> ctx["dataset"] = "cifar"
    Traceback (most recent call last):
    ...
    metalab.errors.FrozenContextError: the context is read-only; ...
    """

    __slots__ = ("_data", "_fp", "_metalab_watch")
    _data: dict[str, Any]
    _fp: str | None
    _metalab_watch: Any

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._setup({} if data is None else data, 0)

    @classmethod
    def _make(cls, data: Mapping[str, Any], depth: int) -> FrozenContext:
        ctx = cls.__new__(cls)
        ctx._setup(data, depth)
        return ctx

    def _setup(self, data: Mapping[str, Any], depth: int) -> None:
        object.__setattr__(self, "_data", {})
        object.__setattr__(self, "_fp", None)
        watch: _WatchList = []
        frozen = {}
        for k, v in data.items():
            if not isinstance(k, str):
                raise ContextError(f"context keys must be strings, got {k!r}")
            frozen[k] = _freeze(v, f".{k}", watch, depth)
        object.__setattr__(self, "_data", frozen)
        object.__setattr__(self, "_metalab_watch", tuple(watch))

    @property
    def fingerprint(self) -> str:
        """Stable sha256 of the context's content."""
        fp = self._fp
        if fp is None:
            fp = _fingerprint(self.to_dict())
            object.__setattr__(self, "_fp", fp)
        return fp

    def __dask_tokenize__(self) -> str:
        return self.fingerprint

    def to_dict(self) -> dict[str, Any]:
        """A mutable deep copy as plain dicts and lists."""

        def thaw(v: Any) -> Any:
            if isinstance(v, FrozenContext):
                return v.to_dict()
            if isinstance(v, tuple):
                return [thaw(x) for x in v]
            return v

        return {k: thaw(v) for k, v in self._data.items()}

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise AttributeError(
                f"context has no item {key!r}; it has {sorted(self._data)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def _readonly(self, *args: Any, **kwargs: Any) -> None:
        raise FrozenContextError(
            "the context is read-only; it is shared by every run and part of each run id. "
            "Put per-run values in params, or build a new context for a new experiment"
        )

    __setitem__ = __delitem__ = __setattr__ = __delattr__ = _readonly
    clear = pop = popitem = setdefault = update = _readonly

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenContext, (self._data,))

    def __repr__(self) -> str:
        return f"FrozenContext({dict(self._data)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenContext):
            return self.fingerprint == other.fingerprint
        if isinstance(other, Mapping):
            return self.to_dict() == dict(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.fingerprint)


def _spec_fingerprint(self: Any) -> str:
    cached: str | None = self.__dict__.get("_metalab_fp")
    if cached is None:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        cached = spec_fingerprint(type(self).__qualname__, fields)
        object.__setattr__(self, "_metalab_fp", cached)
    return cached


def _spec_readonly(self: Any, name: str, *args: Any) -> None:
    raise FrozenContextError(
        f"cannot change field {name!r} of {type(self).__qualname__}: a context_spec instance "
        "is read-only (shared by every run, part of each run id). Make a new one instead, "
        f"e.g. dataclasses.replace(ctx, {name}=...)"
    )


def _freeze_fields(self: Any) -> None:
    """Deep-freeze dict, list and numpy fields so that nothing can change the fingerprint."""
    watch: _WatchList = []
    for f in dataclasses.fields(self):
        value = getattr(self, f.name)
        frozen = _freeze(value, f".{f.name}", watch, 0)
        if frozen is not value:
            object.__setattr__(self, f.name, frozen)
    object.__setattr__(self, "_metalab_watch", tuple(watch))


def _spec_getstate(self: Any) -> dict[str, Any]:
    state = dict(self.__dict__)
    state.pop("_metalab_watch", None)  # rebuilt (with fresh snapshots) when unpickled
    return state


def _spec_setstate(self: Any, state: dict[str, Any]) -> None:
    # Unpickled arrays are writable again: freeze the fields anew, as __post_init__ does.
    for k, v in state.items():
        object.__setattr__(self, k, v)
    _freeze_fields(self)


def context_spec(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen dataclass whose instances have a stable ``.fingerprint``.

    Examples
    --------
    >>> @context_spec
    ... class DataContext:
    ...     dataset_path: str
    ...     vocab_size: int = 10000
    >>> ctx = DataContext(dataset_path="data/train.csv")
    >>> len(ctx.fingerprint)
    64
    """
    if not isinstance(cls, type):
        raise ContextError(f"@context_spec decorates a class, got {cls!r}")
    user_post_init = getattr(cls, "__post_init__", None)

    def __post_init__(self: Any, *args: Any) -> None:
        if user_post_init is not None:
            user_post_init(self, *args)
        _freeze_fields(self)

    cls.__post_init__ = __post_init__  # type: ignore[attr-defined]
    dc = dataclasses.dataclass(frozen=True)(cls)
    dc.__setattr__ = _spec_readonly  # type: ignore[method-assign]
    dc.__delattr__ = _spec_readonly  # type: ignore[method-assign]
    dc.fingerprint = property(_spec_fingerprint, doc="Stable sha256 of the fields.")  # type: ignore[attr-defined]
    dc.__dask_tokenize__ = _spec_fingerprint  # type: ignore[attr-defined]
    dc.__metalab_context_spec__ = True  # type: ignore[attr-defined]
    if "__getstate__" not in cls.__dict__ and "__setstate__" not in cls.__dict__:
        setattr(dc, "__getstate__", _spec_getstate)  # noqa: B010 - a method of the class
        setattr(dc, "__setstate__", _spec_setstate)  # noqa: B010
    return dc


def freeze_context(context: Any) -> Any:
    """Return a frozen, fingerprintable context for ``Experiment(context=...)``."""
    if context is None:
        return FrozenContext({})
    if isinstance(context, FrozenContext):
        return context
    if _is_spec(context):
        context.fingerprint  # noqa: B018 - fail early if it cannot be fingerprinted
        return context
    if isinstance(context, Mapping):
        ctx = FrozenContext(context)
        ctx.fingerprint  # noqa: B018
        return ctx
    if dataclasses.is_dataclass(context) and not isinstance(context, type):
        name = type(context).__qualname__
        raise ContextError(
            f"context is an instance of {name}, a plain dataclass, which metalab cannot "
            f"make read-only; decorate the class with @metalab.context_spec instead of "
            "@dataclass (a frozen dataclass with a fingerprint), or pass a dict, e.g. "
            "context=dataclasses.asdict(ctx)"
        )
    raise ContextError(
        f"context must be a dict or a @metalab.context_spec instance, got "
        f"{type(context).__qualname__}; wrap your values in a dict, e.g. context={{'data': ...}}"
    )
