"""metalab's distributions (``uniform``, ``loguniform``, ``randint``, ``choice``,
``normal``) as Optuna distributions, and Optuna's sampled values back as parameters.

``normal(mean, std)`` has no Optuna counterpart: the sampler sees its quantile ``u`` in
``(0, 1)`` and the configuration gets ``mean + std * Phi^-1(u)``.  A ``choice`` whose
options are not plain scalars is sampled by index.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from .._hashing import check_param_key, normalize_param
from ..errors import ParamSpaceError
from ..params.distributions import Choice, Distribution, LogUniform, Normal, RandInt, Uniform

_EPS = 1e-9
_SCALARS = (type(None), bool, int, float, str)


def check_space(space: Any) -> dict[str, Any]:
    """The space as a dict of name -> distribution or constant (checked)."""
    if not isinstance(space, Mapping) or not space:
        raise ParamSpaceError(
            "optimize(space=...) needs a non-empty dict of name -> distribution, e.g. "
            "{'lr': metalab.loguniform(1e-5, 1e-1)}"
        )
    out: dict[str, Any] = {}
    for k, v in space.items():
        if not isinstance(k, str):
            raise ParamSpaceError(f"optimize() space keys must be strings, got {k!r}")
        check_param_key(k, "optimize(space=...)")
        if isinstance(v, Choice) and v.p is not None:
            raise ParamSpaceError(
                f"optimize(): {k!r} is choice(..., p=...); samplers choose options "
                "themselves, so drop p="
            )
        if isinstance(v, Distribution) and not isinstance(
            v, (Choice, LogUniform, Normal, RandInt, Uniform)
        ):
            raise ParamSpaceError(
                f"optimize(): {k!r} is a {type(v).__name__}; optimize() takes uniform, "
                "loguniform, randint, choice and normal (or a constant)"
            )
        out[k] = v if isinstance(v, Distribution) else normalize_param(v, k)
    return out


def _by_index(d: Choice) -> bool:
    return not all(type(o) in _SCALARS for o in d.options)


def to_optuna(space: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna distributions of the space's sampled names (constants left out)."""
    import optuna.distributions as od

    out: dict[str, Any] = {}
    for k, d in space.items():
        if isinstance(d, Uniform):
            out[k] = od.FloatDistribution(d.low, d.high)
        elif isinstance(d, LogUniform):
            out[k] = od.FloatDistribution(d.low, d.high, log=True)
        elif isinstance(d, RandInt):
            out[k] = od.IntDistribution(d.low, d.high - 1)
        elif isinstance(d, Normal):
            out[k] = od.FloatDistribution(_EPS, 1 - _EPS)
        elif isinstance(d, Choice):
            opts = tuple(range(len(d.options))) if _by_index(d) else d.options
            out[k] = od.CategoricalDistribution(opts)
    return out


def to_config(space: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration (metalab params) of Optuna's sampled ``values``."""
    cfg: dict[str, Any] = {}
    for k, d in space.items():
        if not isinstance(d, Distribution):
            cfg[k] = d
            continue
        v = values[k]
        if isinstance(d, Normal):
            v = d.mean + d.std * statistics.NormalDist().inv_cdf(v)
        elif isinstance(d, Choice) and _by_index(d):
            v = d.options[v]
        elif isinstance(d, RandInt):
            v = int(v)
        elif isinstance(d, (Uniform, LogUniform)):
            v = float(v)
        cfg[k] = normalize_param(v, k)
    return cfg


def to_values(space: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna's values of a configuration (the inverse of :func:`to_config`)."""
    out: dict[str, Any] = {}
    for k, d in space.items():
        if not isinstance(d, Distribution):
            continue
        v = config[k]
        if isinstance(d, Normal):
            v = min(1 - _EPS, max(_EPS, statistics.NormalDist(d.mean, d.std).cdf(v)))
        elif isinstance(d, Choice) and _by_index(d):
            v = [normalize_param(o, k) for o in d.options].index(v)
        out[k] = v
    return out


def grid_values(space: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The search space of Optuna's ``GridSampler``: every value of each name."""
    out: dict[str, list[Any]] = {}
    for k, d in space.items():
        if isinstance(d, Choice):
            out[k] = list(range(len(d.options))) if _by_index(d) else list(d.options)
        elif isinstance(d, RandInt):
            out[k] = list(range(d.low, d.high))
        elif isinstance(d, Distribution):
            raise ParamSpaceError(
                f"optimize(sampler='grid'): {k!r} is continuous ({d!r}); a grid needs "
                "choice([...]) or randint(...) values"
            )
    return out
