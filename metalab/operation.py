"""The ``@operation`` decorator: a function that runs once per (params, seed)."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from .errors import OperationSignatureError

__all__ = ["ALLOWED_ARGUMENTS", "Operation", "operation"]

ALLOWED_ARGUMENTS = ("context", "params", "seeds", "capture")


class Operation:
    """A user function plus its identity (name, version) and the arguments it asks for.

    Calling an ``Operation`` calls the wrapped function unchanged.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        version: str = "0",
        resources: Mapping[str, float] | None = None,
    ) -> None:
        if not callable(func):
            raise OperationSignatureError(f"@operation decorates a function, got {func!r}")
        self.func = func
        self.name = str(name or getattr(func, "__name__", "operation"))
        self.version = str(version)
        self.resources = dict(resources or {})
        self.wants = _check_signature(func, self.name)
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", self.name)
        self.__qualname__ = getattr(func, "__qualname__", self.name)
        self.__module__ = getattr(func, "__module__", __name__)
        self.__wrapped__ = func

    @property
    def source_hash(self) -> str | None:
        """sha256 of the function's source text, or None when the source is unavailable."""
        try:
            src = inspect.getsource(self.func)
        except (OSError, TypeError):
            return None
        return hashlib.sha256(src.encode()).hexdigest()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Operation {self.name!r} version={self.version!r} wants={list(self.wants)}>"


def _check_signature(func: Callable[..., Any], name: str) -> tuple[str, ...]:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:  # builtins
        raise OperationSignatureError(f"cannot read the signature of {func!r}: {exc}") from None
    wants: list[str] = []
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD or p.kind is p.VAR_POSITIONAL:
            raise OperationSignatureError(
                f"operation {name!r} has *args/**kwargs ({p}); declare the arguments it "
                f"needs by name, any of: {', '.join(ALLOWED_ARGUMENTS)}"
            )
        if p.name not in ALLOWED_ARGUMENTS:
            raise OperationSignatureError(
                f"operation {name!r} declares an argument {p.name!r} that metalab cannot "
                f"supply; an operation may declare any of: {', '.join(ALLOWED_ARGUMENTS)} "
                f"(e.g. def {getattr(func, '__name__', 'op')}(params, seeds, capture): ...). "
                "Put values in params or the context instead"
            )
        if p.kind is p.POSITIONAL_ONLY:
            raise OperationSignatureError(
                f"operation {name!r}: argument {p.name!r} is positional-only; metalab passes "
                "arguments by name, remove the '/'"
            )
        wants.append(p.name)
    return tuple(wants)


def operation(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    version: str = "0",
    resources: Mapping[str, float] | None = None,
) -> Any:
    """Declare an experiment operation.

    The function may declare any subset of ``context``, ``params``, ``seeds`` and
    ``capture``, in any order, and receives exactly those. A returned dict of numbers
    is recorded as metrics.

    Parameters
    ----------
    name
        Identity of the operation (defaults to the function name); part of every run id.
    version
        Bump it when the code changes results, so that resume re-runs everything.
    resources
        Dask worker resources each run needs, e.g. ``{"GPU": 1}``.

    Examples
    --------
    >>> @operation(name="square", version="1")
    ... def square(params, capture):
    ...     capture.metric("y", params["x"] ** 2)
    >>> square.name, square.wants
    ('square', ('params', 'capture'))
    """

    def wrap(f: Callable[..., Any]) -> Operation:
        return Operation(f, name=name, version=version, resources=resources)

    if func is not None:
        return wrap(func)
    return wrap
