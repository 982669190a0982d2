"""``metalab.optimize``: a parameter source that learns from the runs so far."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .._hashing import canonical_json
from ..capture.names import check_name
from ..errors import ParamSpaceError
from ..params import columns
from ..params.distributions import Choice, Distribution, RandInt
from ..params.sources import ParamSource, check_size
from .space import check_space
from .study import check_pruner, check_sampler

if TYPE_CHECKING:
    from ..sweep.sweep import Sweep

__all__ = ["Optimize", "optimize"]

AGGREGATES = ("mean", "median")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParamSpaceError(f"optimize({name}=...) must be an int >= 1, got {value!r}")
    return value


class Optimize(ParamSource):
    """``n_trials`` configurations proposed one after another by an Optuna sampler.

    Iterating gives the configurations decided so far (trial order); ``len()`` is
    ``n_trials``.  :func:`metalab.run` drives it (see :mod:`metalab.search.driver`).
    """

    #: Tells ``Experiment`` and ``run`` that the configurations come while it runs.
    adaptive = True

    def __init__(
        self,
        space: Mapping[str, Any],
        *,
        metric: str,
        direction: str = "minimize",
        n_trials: int,
        sampler: Any = "tpe",
        seed: int = 0,
        pruner: Any = None,
        batch_size: int | None = None,
        aggregate: str = "mean",
    ) -> None:
        self.space = check_space(space)
        if not isinstance(metric, str):
            raise ParamSpaceError(f"optimize(metric=...) is a metric name, got {metric!r}")
        check_name(metric, "optimize(metric=...)")
        if direction not in ("minimize", "maximize"):
            raise ParamSpaceError(
                f"optimize(direction={direction!r}): use 'minimize' or 'maximize'"
            )
        if aggregate not in AGGREGATES:
            raise ParamSpaceError(f"optimize(aggregate={aggregate!r}): use 'mean' or 'median'")
        check_sampler(sampler)
        check_pruner(pruner)
        self.metric, self.direction, self.aggregate = metric, direction, aggregate
        self.n_trials = _positive_int("n_trials", n_trials)
        check_size(self.n_trials, "optimize(n_trials=...)")
        self.batch_size = None if batch_size is None else _positive_int("batch_size", batch_size)
        self.sampler, self.seed, self.pruner = sampler, int(seed), pruner
        #: Configurations decided so far, in trial order (set while a search runs).
        self.decided: list[dict[str, Any]] = []
        self.column_kinds()

    def _column_kinds(self) -> columns.Kinds:
        acc: dict[str, set[str]] = {}
        for k, v in self.space.items():
            if isinstance(v, Choice):
                for o in v.options:
                    columns.add_kinds({k: o}, acc)
            elif isinstance(v, RandInt):
                acc[k] = {columns.value_kind(v.low), columns.value_kind(v.high - 1)}
            elif isinstance(v, Distribution):
                acc[k] = {"float"}
            else:
                columns.add_kinds({k: v}, acc)
        return columns.freeze(acc)

    def __len__(self) -> int:
        return self.n_trials

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for c in self.decided:
            yield dict(c)

    def iter_json(self) -> Iterator[str]:
        """Canonical JSON of the configurations decided so far."""
        return map(canonical_json, self.decided)

    def describe(self) -> dict[str, Any]:
        """What the manifest records: the search's objective and how it proposes."""
        sampler = self.sampler if isinstance(self.sampler, str) else type(self.sampler).__name__
        pruner = (
            self.pruner
            if self.pruner is None or isinstance(self.pruner, str)
            else (type(self.pruner).__name__)
        )
        return {
            "kind": "optimize",
            "n": self.n_trials,
            "metric": self.metric,
            "direction": self.direction,
            "aggregate": self.aggregate,
            "sampler": sampler,
            "pruner": pruner,
            "seed": self.seed,
            "space": {k: repr(v) for k, v in self.space.items()},
        }

    def drive(self, sweep: Sweep) -> None:
        """Run the search as ``sweep`` (called by :func:`metalab.run`)."""
        from .driver import run_search

        run_search(sweep, self)

    def __repr__(self) -> str:
        return (
            f"<Optimize: {self.n_trials} trials, {self.direction} {self.metric!r}, "
            f"{len(self.decided)} decided>"
        )


def optimize(
    space: Mapping[str, Any],
    *,
    metric: str,
    direction: str = "minimize",
    n_trials: int,
    sampler: Any = "tpe",
    seed: int = 0,
    pruner: Any = None,
    batch_size: int | None = None,
    aggregate: str = "mean",
) -> Optimize:
    """A parameter source that proposes each configuration from the results so far.

    Optuna's samplers do the proposing (``pip install 'metalab[optuna]'``); the store
    is the source of truth, so a killed search resumes exactly (see ``docs/search.md``).

    Parameters
    ----------
    space
        name -> ``uniform``, ``loguniform``, ``randint``, ``choice``, ``normal`` or a
        constant.
    metric, direction
        The objective: a metric each run records, ``"minimize"`` or ``"maximize"``.
    n_trials
        Configurations to try. Each runs once per replicate of the experiment's seeds;
        the sampler is told the ``aggregate`` (``"mean"`` or ``"median"``) over them.
    sampler
        ``"tpe"``, ``"random"``, ``"cmaes"``, ``"grid"`` (seeded with ``seed``) or an
        ``optuna.samplers`` object.
    pruner
        ``"asha"``, ``"median"``, ``"hyperband"`` or an ``optuna.pruners`` object:
        what ``capture.should_stop()`` asks. ``None``: never stop early.
    batch_size
        Trials in flight at once; default the executor's workers. ``1`` is a strictly
        sequential search.

    Examples
    --------
    >>> import metalab
    >>> p = metalab.optimize({"x": metalab.uniform(-1, 1)}, metric="loss", n_trials=20)
    >>> len(p)
    20
    """
    return Optimize(
        space,
        metric=metric,
        direction=direction,
        n_trials=n_trials,
        sampler=sampler,
        seed=seed,
        pruner=pruner,
        batch_size=batch_size,
        aggregate=aggregate,
    )
