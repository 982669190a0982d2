"""Parameter sources: every source yields plain dicts in a deterministic order."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterator, Mapping, Sequence
from json.encoder import encode_basestring
from typing import Any

from .._hashing import canonical_json, check_param_key, normalize_param, normalize_params
from ..errors import ParamSpaceError
from ..seeds import MAX_RUNS
from . import columns
from .distributions import Choice, Distribution, LogUniform, Normal, RandInt, Uniform

__all__ = [
    "Concat",
    "Grid",
    "Manual",
    "ParamSource",
    "Product",
    "Random",
    "grid",
    "manual",
    "random",
]


MAX_DESCRIBED_VALUES = 1000


class ParamSource:
    """Base class of parameter sources.

    Subclasses implement ``__iter__`` (plain, normalized dicts) and ``__len__``.
    ``a + b`` concatenates two sources, ``a * b`` takes their product.
    """

    def __iter__(self) -> Iterator[dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def iter_json(self) -> Iterator[str]:
        """Canonical JSON of each configuration, in order (fast paths may override)."""
        return map(canonical_json, self)

    def column_kinds(self) -> columns.Kinds:
        """Kinds of value in each results-table column (checked: one type per column)."""
        kinds = self.__dict__.get("_kinds")
        if kinds is None:
            kinds = self._column_kinds()
            self.__dict__["_kinds"] = kinds
        return kinds

    def _column_kinds(self) -> columns.Kinds:
        acc: dict[str, set[str]] = {}
        for config in self:
            columns.add_kinds(config, acc)
        return columns.freeze(acc)

    def describe(self) -> dict[str, Any]:
        """A JSON description for the store manifest."""
        return {"kind": type(self).__name__.lower(), "n": len(self)}

    def __add__(self, other: ParamSource) -> ParamSource:
        if not isinstance(other, ParamSource):
            return NotImplemented
        return Concat(self, other)

    def __mul__(self, other: ParamSource) -> ParamSource:
        if not isinstance(other, ParamSource):
            return NotImplemented
        return Product(self, other)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {len(self)} configurations>"


class Grid(ParamSource):
    """Cartesian product of axes; the last axis varies fastest."""

    def __init__(self, **axes: Sequence[Any]) -> None:
        self.axes: dict[str, list[Any]] = {}
        for key, values in axes.items():
            is_list = isinstance(values, (Sequence, range)) or hasattr(values, "tolist")
            if isinstance(values, (str, bytes, Mapping)) or not is_list:
                raise ParamSpaceError(
                    f"grid axis {key!r} must be a list of values, got {values!r:.60}; "
                    f"write grid({key}=[{values!r:.40}]) for a single value"
                )
            vals = values.tolist() if hasattr(values, "tolist") else list(values)
            if not vals:
                raise ParamSpaceError(f"grid axis {key!r} is empty; give it at least one value")
            check_param_key(key, f"grid({key}=...)")
            self.axes[key] = [normalize_param(v, f"{key}[{i}]") for i, v in enumerate(vals)]
        check_size(len(self), "grid(...)")
        self.column_kinds()

    def _column_kinds(self) -> columns.Kinds:
        acc: dict[str, set[str]] = {}
        for key, vals in self.axes.items():
            for v in vals:
                columns.add_kinds({key: v}, acc)
        return columns.freeze(acc)

    def __len__(self) -> int:
        n = 1
        for v in self.axes.values():
            n *= len(v)
        return n

    def __iter__(self) -> Iterator[dict[str, Any]]:
        keys = list(self.axes)
        for combo in itertools.product(*self.axes.values()):
            yield dict(zip(keys, combo, strict=True))

    def iter_json(self) -> Iterator[str]:
        keys = list(self.axes)
        if not keys:
            return iter(["{}"])
        perm = sorted(range(len(keys)), key=lambda i: keys[i])
        heads = [canonical_json(k) + ":" for k in keys]
        frags = [
            [h + _scalar_json(v) for v in self.axes[k]] for h, k in zip(heads, keys, strict=True)
        ]
        # Braces folded into the first and last fragments in sorted-key order, so each
        # configuration is one C-level join (no per-configuration Python work).
        frags[perm[0]] = ["{" + f for f in frags[perm[0]]]
        frags[perm[-1]] = [f + "}" for f in frags[perm[-1]]]
        if len(keys) == 1:
            return iter(frags[0])
        combos = itertools.product(*frags)
        if perm == sorted(perm):
            return map(",".join, combos)
        reorder = operator.itemgetter(*perm)
        return (",".join(reorder(c)) for c in combos)

    def describe(self) -> dict[str, Any]:
        # Long axes are summarized: the manifest stays small for million-run grids.
        axes = {
            k: v
            if len(v) <= MAX_DESCRIBED_VALUES
            else {"n": len(v), "first": v[:5], "last": v[-5:]}
            for k, v in self.axes.items()
        }
        # "order" keeps the axes' order (the manifest sorts keys): ``metalab table``
        # rebuilds the plan's order from it (params/order.py).
        return {"kind": "grid", "n": len(self), "axes": axes, "order": list(self.axes)}


def _scalar_json(v: Any) -> str:
    """Canonical JSON of one value; scalars skip the (slow to set up) full encoder."""
    t = type(v)
    if t is int:
        return int.__repr__(v)
    if t is str:
        return encode_basestring(v)
    if t is float and v == v and v not in (float("inf"), float("-inf")):
        return float.__repr__(v)
    return canonical_json(v)


class Manual(ParamSource):
    """An explicit list of parameter dicts."""

    def __init__(self, configs: Sequence[Mapping[str, Any]]) -> None:
        if isinstance(configs, Mapping) or not isinstance(configs, Sequence):
            raise ParamSpaceError(
                f"manual() takes a list of dicts, got {type(configs).__name__}; "
                "e.g. manual([{'lr': 0.01}, {'lr': 0.1}])"
            )
        check_size(len(configs), "manual(...)")
        self.configs = [normalize_params(c, f"manual[{i}]") for i, c in enumerate(configs)]
        self.column_kinds()

    def __len__(self) -> int:
        return len(self.configs)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for c in self.configs:
            yield dict(c)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "manual", "n": len(self)}
        if len(self) <= MAX_DESCRIBED_VALUES:  # lets ``metalab table`` list runs in order
            out["configs"] = self.configs
        return out


class Random(ParamSource):
    """``n_trials`` configurations sampled from ``space`` with a fixed ``seed``."""

    def __init__(self, space: Mapping[str, Any], n_trials: int, seed: int = 0) -> None:
        if not isinstance(space, Mapping) or not space:
            raise ParamSpaceError(
                "random(space=...) needs a non-empty dict of name -> distribution, e.g. "
                "space={'lr': metalab.loguniform(1e-4, 1e-1)}"
            )
        if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
            raise ParamSpaceError(f"random(n_trials=...) must be an int >= 1, got {n_trials!r}")
        check_size(n_trials, "random(n_trials=...)")
        self.space = dict(space)
        for k, v in self.space.items():
            if not isinstance(k, str):
                raise ParamSpaceError(f"random() space keys must be strings, got {k!r}")
            check_param_key(k, "random(space=...)")
            if not isinstance(v, Distribution):
                self.space[k] = normalize_param(v, k)
        self.n_trials = n_trials
        self.seed = int(seed)
        self._configs: list[dict[str, Any]] | None = None
        self.column_kinds()

    def _column_kinds(self) -> columns.Kinds:
        builtin = (Choice, RandInt, Uniform, LogUniform, Normal)
        if any(
            isinstance(v, Distribution) and not isinstance(v, builtin) for v in self.space.values()
        ):
            return super()._column_kinds()  # a user-defined distribution: sample to know
        acc: dict[str, set[str]] = {}
        for k, v in self.space.items():
            if isinstance(v, Choice):
                for i, o in enumerate(v.options):
                    columns.add_kinds({k: normalize_param(o, f"{k}: choice option [{i}]")}, acc)
            elif isinstance(v, RandInt):
                acc[k] = {columns.value_kind(v.low), columns.value_kind(v.high - 1)}
            elif isinstance(v, (Uniform, LogUniform, Normal)):
                acc[k] = {"float"}
            else:  # a constant
                columns.add_kinds({k: v}, acc)
        return columns.freeze(acc)

    def materialize(self) -> list[dict[str, Any]]:
        """Every configuration, drawn once from the seeded generator (then kept)."""
        if self._configs is None:
            import numpy as np

            rng = np.random.default_rng(self.seed)
            cols = {
                k: v.sample(rng, self.n_trials)
                if isinstance(v, Distribution)
                else [v] * self.n_trials
                for k, v in self.space.items()
            }
            keys = list(cols)
            self._configs = [
                dict(zip(keys, row, strict=True)) for row in zip(*cols.values(), strict=True)
            ]
        return self._configs

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_configs"] = None
        return state

    def __len__(self) -> int:
        return self.n_trials

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for c in self.materialize():
            yield dict(c)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "random",
            "n": self.n_trials,
            "seed": self.seed,
            "space": {k: repr(v) for k, v in self.space.items()},
        }


class Concat(ParamSource):
    """All configurations of ``a``, then all of ``b``."""

    def __init__(self, a: ParamSource, b: ParamSource) -> None:
        self.a, self.b = a, b
        check_size(len(self), "a + b")
        self.column_kinds()

    def _column_kinds(self) -> columns.Kinds:
        return columns.merge(self.a.column_kinds(), self.b.column_kinds())

    def __len__(self) -> int:
        return len(self.a) + len(self.b)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self.a
        yield from self.b

    def iter_json(self) -> Iterator[str]:
        return itertools.chain(self.a.iter_json(), self.b.iter_json())

    def describe(self) -> dict[str, Any]:
        return {"kind": "concat", "n": len(self), "parts": [self.a.describe(), self.b.describe()]}


class Product(ParamSource):
    """Every configuration of ``a`` merged with every configuration of ``b``."""

    def __init__(self, a: ParamSource, b: ParamSource) -> None:
        self.a, self.b = a, b
        check_size(len(self), "a * b")
        # Keys hold no dots, so a column's first segment is its top-level key.
        ka = {k.split(".", 1)[0] for k in a.column_kinds()}
        kb = {k.split(".", 1)[0] for k in b.column_kinds()}
        if ka & kb:
            raise ParamSpaceError(
                f"a * b: both sources set {sorted(ka & kb)}; a product needs disjoint keys "
                "(use a + b to concatenate instead)"
            )
        self.column_kinds()

    def _column_kinds(self) -> columns.Kinds:
        return columns.merge(self.a.column_kinds(), self.b.column_kinds())

    def __len__(self) -> int:
        return len(self.a) * len(self.b)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        bs = list(self.b)
        for x in self.a:
            for y in bs:
                yield {**x, **y}

    def describe(self) -> dict[str, Any]:
        return {"kind": "product", "n": len(self), "parts": [self.a.describe(), self.b.describe()]}


def check_size(n: int, what: str) -> None:
    """Refuse a parameter space or experiment larger than :data:`MAX_RUNS`."""
    if n > MAX_RUNS:
        raise ParamSpaceError(
            f"{what} would plan {n:,} runs, more than the limit of {MAX_RUNS:,} runs per "
            "experiment (the plan would not fit in memory); split it into several "
            "experiments, or sample it with metalab.random(space=..., n_trials=...)"
        )


def grid(**axes: Sequence[Any]) -> Grid:
    """Cartesian product of parameter axes.

    Examples
    --------
    >>> g = grid(lr=[0.1, 0.01], batch=[32, 64])
    >>> len(g), next(iter(g))
    (4, {'lr': 0.1, 'batch': 32})
    """
    return Grid(**axes)


def manual(configs: Sequence[Mapping[str, Any]]) -> Manual:
    """An explicit list of parameter dicts.

    Examples
    --------
    >>> list(manual([{"lr": 0.01, "epochs": 10}]))
    [{'lr': 0.01, 'epochs': 10}]
    """
    return Manual(configs)


def random(space: Mapping[str, Any], n_trials: int, seed: int = 0) -> Random:
    """``n_trials`` configurations sampled from ``space`` (distributions or constants).

    Examples
    --------
    >>> from metalab import uniform
    >>> r = random(space={"x": uniform(0, 1)}, n_trials=3, seed=1)
    >>> len(r), list(r) == list(r)
    (3, True)
    """
    return Random(space, n_trials, seed)


def as_source(params: Any) -> ParamSource:
    """Coerce ``Experiment(params=...)``: a source, a list of dicts, or a dict (one config)."""
    if isinstance(params, ParamSource):
        return params
    if params is None:
        return Manual([{}])
    if isinstance(params, Mapping):
        return Manual([params])
    if isinstance(params, Sequence) and not isinstance(params, (str, bytes)):
        return Manual(params)
    raise ParamSpaceError(
        f"params must be a parameter source (metalab.grid / random / manual), a list of "
        f"dicts or a dict, got {type(params).__name__}"
    )
