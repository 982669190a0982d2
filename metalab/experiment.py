"""Experiment: a frozen operation + context + parameter source + seed plan."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ._hashing import run_id_prefix, run_ids_for
from .context import check_context, freeze_context
from .errors import ExperimentError, FrozenExperimentError
from .operation import Operation
from .params.sources import (
    Concat,
    Grid,
    Manual,
    ParamSource,
    Product,
    Random,
    as_source,
    check_size,
)
from .seeds import SeedPlan

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd

__all__ = ["Experiment"]

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_BUILTIN_SOURCES = (Grid, Manual, Random, Concat, Product)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        suggestion = re.sub(r"[^A-Za-z0-9._+-]+", "_", str(name)).strip("._-") or "my_experiment"
        raise ExperimentError(
            f"experiment name {name!r} is not safe as a folder name; use letters, digits, "
            f"'.', '_', '+' and '-' (starting with a letter or digit), e.g. name={suggestion!r}"
        )
    return name


class Experiment:
    """What to run: ``operation`` over every ``params`` configuration x ``seeds`` replicate.

    Frozen: its attributes cannot be assigned after construction
    (:class:`~metalab.FrozenExperimentError`), since run ids are computed from them.

    Parameters
    ----------
    name
        Experiment name; the default store is ``./runs/<name>``.
    operation
        A function decorated with :func:`metalab.operation`.
    params
        A parameter source (``grid``, ``random``, ``manual``, or a combination).
    seeds
        ``metalab.seeds(base=..., replicates=...)``; default one replicate of base 0.
    context
        Read-only data shared by all runs: a dict or a ``@context_spec`` instance.
    version
        Experiment version; part of every run id.
    description
        Free text kept in the store's manifest.
    """

    name: str
    operation: Operation
    params: ParamSource
    seeds: SeedPlan
    context: Any  # a FrozenContext or a frozen @context_spec instance
    version: str
    description: str

    def __init__(
        self,
        name: str,
        operation: Operation,
        params: ParamSource | Any = None,
        seeds: SeedPlan | None = None,
        context: Any = None,
        version: str = "0",
        description: str = "",
    ) -> None:
        name = _check_name(name)
        if not isinstance(operation, Operation):
            if callable(operation):
                raise ExperimentError(
                    f"operation {getattr(operation, '__name__', operation)!r} is a plain "
                    "function; decorate it with @metalab.operation(name=..., version=...)"
                )
            raise ExperimentError(f"operation must be an @metalab.operation, got {operation!r}")
        source = as_source(params)
        if not isinstance(source, _BUILTIN_SOURCES) and not getattr(source, "adaptive", False):
            source = Manual(list(source))  # validate user-defined sources now
        plan = seeds if seeds is not None else SeedPlan()
        if not isinstance(plan, SeedPlan):
            raise ExperimentError(
                f"seeds must be metalab.seeds(base=..., replicates=...), got {plan!r}"
            )
        check_size(len(source) * plan.replicates, "the experiment (configurations x replicates)")
        fields = {
            "name": name,
            "operation": operation,
            "params": source,
            "seeds": plan,
            "context": freeze_context(context),
            "version": str(version),
            "description": description,
        }
        for key, value in fields.items():
            object.__setattr__(self, key, value)

    # Run ids are computed from these fields, so they never change after __init__.
    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenExperimentError(name)

    def __delattr__(self, name: str) -> None:
        raise FrozenExperimentError(name)

    def __len__(self) -> int:
        """Number of runs: configurations x replicates."""
        return len(self.params) * self.seeds.replicates

    def __repr__(self) -> str:
        return (
            f"Experiment({self.name!r}, version={self.version!r}, operation="
            f"{self.operation.name!r}, runs={len(self)})"
        )

    @property
    def run_id_prefix(self) -> str:
        """The hashed text every run id of this experiment starts from (see ``_hashing``)."""
        return run_id_prefix(
            context_fp=self.context.fingerprint,
            experiment=self.name,
            experiment_version=self.version,
            operation=self.operation.name,
            operation_version=self.operation.version,
        )

    def manifest(self) -> dict[str, Any]:
        """What the store's manifest.json records about this experiment."""
        return {
            "experiment": self.name,
            "experiment_version": self.version,
            "description": self.description,
            "operation": self.operation.name,
            "operation_version": self.operation.version,
            "context_fingerprint": self.context.fingerprint,
            "params": self.params.describe(),
            "seeds": {"base": self.seeds.base, "replicates": self.seeds.replicates},
            "runs": len(self),
        }

    def plan(self) -> pd.DataFrame:
        """Every run descriptor as a pandas frame: run_id, params, replicate, seed, attempt.

        One row per distinct run: a configuration listed twice (e.g. by ``a + b``) has
        one run id, so it appears (and runs) once.
        """
        import numpy as np
        import pandas as pd
        import pyarrow as pa

        check_context(self.context)  # a watched value (e.g. a DataFrame) changed in place?
        reps = self.seeds.replicates
        base = self.seeds.base
        prefix = self.run_id_prefix
        configs = list(self.params.iter_json())
        seeds = [self.seeds.seed_int(r) for r in range(reps)]
        if reps == 1:
            run_ids = run_ids_for(prefix, configs, base, 0)
            params_col = configs
        else:
            per_rep = [run_ids_for(prefix, configs, base, r) for r in range(reps)]
            run_ids = [rid for row in zip(*per_rep, strict=True) for rid in row]
            params_col = [p for p in configs for _ in range(reps)]
        n = len(run_ids)
        ids = pa.array(run_ids, pa.string())
        text = pd.StringDtype("pyarrow")
        plan = pd.DataFrame(
            {
                "run_id": pd.Series(ids, dtype=text),
                "params": pd.Series(pa.array(params_col, pa.string()), dtype=text),
                "replicate": np.tile(np.arange(reps, dtype="int32"), len(configs)),
                "seed": np.tile(np.asarray(seeds, dtype="int64"), len(configs)),
                "attempt": np.ones(n, dtype="int32"),
            }
        )
        if len(set(run_ids)) != n:
            # The same configuration listed twice is the same run: keep its first place.
            plan = plan.drop_duplicates("run_id", ignore_index=True)
        return plan

    def descriptors(self, npartitions: int | None = None) -> dd.DataFrame:
        """The lazy Dask dataframe of run descriptors that :func:`metalab.run` maps over."""
        from .descriptors import to_dask

        return to_dask(self.plan(), n_workers=1, partition_size=None, npartitions=npartitions)
