"""Distributions for :func:`metalab.random` search spaces."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._hashing import normalize_param
from ..errors import ParamSpaceError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Distribution", "choice", "loguniform", "normal", "randint", "uniform"]


class Distribution:
    """Base class: ``sample(rng, n)`` returns ``n`` JSON-like values."""

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:  # pragma: no cover
        """``n`` values drawn with ``rng``, as plain Python values (not numpy scalars)."""
        raise NotImplementedError


def _to_list(values: np.ndarray[Any, Any]) -> list[Any]:
    """Python scalars (not numpy ones), so that samples hash and print like literals."""
    out: list[Any] = values.tolist()
    return out


def _check_range(kind: str, low: float, high: float) -> None:
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise ParamSpaceError(f"{kind}(low, high) needs finite low < high, got ({low}, {high})")


@dataclass(frozen=True)
class Uniform(Distribution):
    """Floats uniform on ``[low, high)``."""

    low: float
    high: float

    def __post_init__(self) -> None:
        _check_range("uniform", self.low, self.high)

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        return _to_list(rng.uniform(self.low, self.high, n))


@dataclass(frozen=True)
class LogUniform(Distribution):
    """Floats whose logarithm is uniform on ``[log(low), log(high))``; ``0 < low``."""

    low: float
    high: float

    def __post_init__(self) -> None:
        _check_range("loguniform", self.low, self.high)
        if self.low <= 0:
            raise ParamSpaceError(f"loguniform needs low > 0, got {self.low}")

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        import numpy as np

        return _to_list(np.exp(rng.uniform(math.log(self.low), math.log(self.high), n)))


@dataclass(frozen=True)
class Normal(Distribution):
    """Floats from a normal distribution."""

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        if not self.std > 0:
            raise ParamSpaceError(f"normal needs std > 0, got {self.std}")

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        return _to_list(rng.normal(self.mean, self.std, n))


@dataclass(frozen=True)
class RandInt(Distribution):
    """Integers uniform on ``[low, high)`` (high excluded, as in numpy)."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if not (isinstance(self.low, int) and isinstance(self.high, int)) or self.low >= self.high:
            raise ParamSpaceError(
                f"randint(low, high) needs ints with low < high (high excluded), "
                f"got ({self.low!r}, {self.high!r})"
            )

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        return _to_list(rng.integers(self.low, self.high, n))


@dataclass(frozen=True)
class Choice(Distribution):
    """One of ``options``, uniformly (or with probabilities ``p``)."""

    options: tuple[Any, ...]
    p: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not self.options:
            raise ParamSpaceError("choice() needs at least one option")
        for i, o in enumerate(self.options):
            normalize_param(o, f"choice option [{i}]")

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        idx = rng.choice(len(self.options), size=n, p=self.p)
        return [normalize_param(self.options[i], "choice") for i in idx.tolist()]


def uniform(low: float, high: float) -> Uniform:
    """Floats uniform on ``[low, high)``."""
    return Uniform(float(low), float(high))


def loguniform(low: float, high: float) -> LogUniform:
    """Floats log-uniform on ``[low, high)``, e.g. learning rates."""
    return LogUniform(float(low), float(high))


def normal(mean: float = 0.0, std: float = 1.0) -> Normal:
    """Floats from ``Normal(mean, std)``."""
    return Normal(float(mean), float(std))


def randint(low: int, high: int) -> RandInt:
    """Integers uniform on ``[low, high)`` (high excluded)."""
    return RandInt(low, high)


def choice(options: Sequence[Any], p: Sequence[float] | None = None) -> Choice:
    """One of ``options`` (uniform, or with probabilities ``p``)."""
    if isinstance(options, (str, bytes)) or not isinstance(options, Sequence):
        raise ParamSpaceError(f"choice() takes a list of options, got {options!r}")
    return Choice(tuple(options), None if p is None else tuple(float(x) for x in p))
