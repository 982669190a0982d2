"""Parameter sources and distributions."""

from .distributions import Distribution, choice, loguniform, normal, randint, uniform
from .sources import ParamSource, as_source, grid, manual, random

__all__ = [
    "Distribution",
    "ParamSource",
    "as_source",
    "choice",
    "grid",
    "loguniform",
    "manual",
    "normal",
    "randint",
    "random",
    "uniform",
]
