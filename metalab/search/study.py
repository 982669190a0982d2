"""The in-memory Optuna study behind a search: sampler, pruner and direction.

No Optuna storage is involved: the study lives in the driver's memory and is rebuilt
from the store on every start (see :mod:`metalab.search.driver`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ParamSpaceError
from .space import grid_values

SAMPLERS = ("tpe", "random", "cmaes", "grid")
PRUNERS = ("asha", "median", "hyperband")


def need_optuna() -> Any:
    """The ``optuna`` module, or an error saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ImportError("metalab.optimize needs Optuna: pip install 'metalab[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def check_sampler(sampler: Any) -> None:
    """Refuse an unknown sampler name (objects are checked when the study is built)."""
    if isinstance(sampler, str) and sampler not in SAMPLERS:
        raise ParamSpaceError(
            f"optimize(sampler={sampler!r}): use one of {', '.join(SAMPLERS)} or an "
            "optuna.samplers object"
        )


def check_pruner(pruner: Any) -> None:
    """Refuse an unknown pruner name."""
    if isinstance(pruner, str) and pruner not in PRUNERS:
        raise ParamSpaceError(
            f"optimize(pruner={pruner!r}): use one of {', '.join(PRUNERS)}, an "
            "optuna.pruners object, or None"
        )


def make_sampler(sampler: Any, seed: int, space: Mapping[str, Any]) -> Any:
    """The Optuna sampler of a name (seeded) or the object itself."""
    optuna = need_optuna()
    if not isinstance(sampler, str):
        if not isinstance(sampler, optuna.samplers.BaseSampler):
            raise ParamSpaceError(
                f"optimize(sampler=...) takes a name ({', '.join(SAMPLERS)}) or an "
                f"optuna.samplers object, got {sampler!r}"
            )
        return sampler
    s = optuna.samplers
    if sampler == "tpe":
        return s.TPESampler(seed=seed)
    if sampler == "random":
        return s.RandomSampler(seed=seed)
    if sampler == "cmaes":
        return s.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return s.GridSampler(grid_values(space), seed=seed)


def make_pruner(pruner: Any) -> Any:
    """The Optuna pruner of a name, the object itself, or ``NopPruner`` for None."""
    optuna = need_optuna()
    p = optuna.pruners
    if pruner is None:
        return p.NopPruner()
    if pruner == "asha":
        return p.SuccessiveHalvingPruner(min_resource=1)
    if pruner == "median":
        return p.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if pruner == "hyperband":
        return p.HyperbandPruner(min_resource=1)
    if not isinstance(pruner, p.BasePruner):
        raise ParamSpaceError(
            f"optimize(pruner=...) takes a name ({', '.join(PRUNERS)}), an "
            f"optuna.pruners object or None, got {pruner!r}"
        )
    return pruner


def new_study(direction: str, sampler: Any = None, pruner: Any = None) -> Any:
    """A fresh in-memory study."""
    optuna = need_optuna()
    return optuna.create_study(direction=direction, sampler=sampler, pruner=pruner)
