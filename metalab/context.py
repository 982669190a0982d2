"""Read-only contexts shared by every run of an experiment.

A plain ``dict`` becomes a :class:`FrozenContext` (deeply read-only); a class
decorated with :func:`context_spec` becomes a frozen dataclass.  Both have a stable
``fingerprint`` that enters every run id.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from ._hashing import fingerprint as _fingerprint
from .errors import ContextError, FrozenContextError

__all__ = ["FrozenContext", "context_spec", "freeze_context"]

T = TypeVar("T")


def _freeze(value: Any) -> Any:
    if isinstance(value, FrozenContext):
        return value
    if isinstance(value, Mapping):
        return FrozenContext(value)
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    mod = type(value).__module__
    if mod == "numpy" and hasattr(value, "flags") and hasattr(value, "setflags"):
        value = value.view()
        value.setflags(write=False)
    return value


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

    __slots__ = ("_data", "_fp")
    _data: dict[str, Any]
    _fp: str | None

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        data = {} if data is None else data
        for k in data:
            if not isinstance(k, str):
                raise ContextError(f"context keys must be strings, got {k!r}")
        object.__setattr__(self, "_data", {k: _freeze(v) for k, v in data.items()})
        object.__setattr__(self, "_fp", None)

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
        cached = _fingerprint({"__spec__": type(self).__qualname__, "fields": fields})
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
    for f in dataclasses.fields(self):
        value = getattr(self, f.name)
        frozen = _freeze(value)
        if frozen is not value:
            object.__setattr__(self, f.name, frozen)


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
    return dc


def freeze_context(context: Any) -> Any:
    """Return a frozen, fingerprintable context for ``Experiment(context=...)``."""
    if context is None:
        return FrozenContext({})
    if isinstance(context, FrozenContext):
        return context
    if getattr(type(context), "__metalab_context_spec__", False):
        context.fingerprint  # noqa: B018 - fail early if it cannot be fingerprinted
        return context
    if isinstance(context, Mapping):
        ctx = FrozenContext(context)
        ctx.fingerprint  # noqa: B018
        return ctx
    if dataclasses.is_dataclass(context) and not isinstance(context, type):
        _fingerprint(context)
        return context
    raise ContextError(
        f"context must be a dict or a @metalab.context_spec instance, got "
        f"{type(context).__qualname__}; wrap your values in a dict, e.g. context={{'data': ...}}"
    )
