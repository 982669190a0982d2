"""The plan's order of configurations, rebuilt from a source's manifest description.

A store keeps no plan index (workers finish in any order, and a grown grid moves every
index), so ``metalab table`` rebuilds the order from what :meth:`ParamSource.describe`
wrote into the manifest: a grid's axes in the order they were given with their values in
listed order, a manual list's configurations, a product's parts (first part outermost)
and a concatenation's parts one after the other.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

#: A configuration's position in the plan, or None when the description cannot place it.
PlanKey = Callable[[Mapping[str, Any]], tuple[Any, ...] | None]


def canonical(value: Any) -> str:
    """One JSON text per value, as the manifest wrote it (numpy scalars as Python)."""
    value = _plain(value)
    return json.dumps(value, sort_keys=True, default=str)


def plan_key(described: Mapping[str, Any] | None) -> PlanKey | None:
    """A function from a configuration (top-level param -> value) to its plan position.

    None when the description cannot rebuild the order (a random source, a grid axis
    too long to be listed in the manifest, a manifest without a description).
    """
    if not isinstance(described, Mapping):
        return None
    kind = described.get("kind")
    if kind == "grid":
        return _grid_key(described)
    if kind == "manual":
        return _manual_key(described)
    parts = described.get("parts")
    if kind in ("product", "concat") and isinstance(parts, list) and len(parts) == 2:
        a, b = plan_key(parts[0]), plan_key(parts[1])
        if a is None or b is None:
            return None
        return _product_key(a, b) if kind == "product" else _concat_key(a, b)
    return None


def _grid_key(described: Mapping[str, Any]) -> PlanKey | None:
    axes = described.get("axes")
    if not isinstance(axes, Mapping):
        return None
    # Manifests older than the "order" entry were written with sorted keys: the
    # sorted order is the best guess they allow.
    order = described.get("order") or sorted(axes)
    positions: list[tuple[str, dict[str, int]]] = []
    for name in order:
        listed = axes.get(name)
        if not isinstance(listed, list):
            return None
        positions.append((name, {canonical(v): i for i, v in enumerate(listed)}))

    def key(config: Mapping[str, Any]) -> tuple[Any, ...] | None:
        out = []
        for name, pos in positions:
            i = pos.get(canonical(config.get(name)))
            if i is None:
                return None
            out.append(i)
        return tuple(out)

    return key


def _manual_key(described: Mapping[str, Any]) -> PlanKey | None:
    configs = described.get("configs")
    if not isinstance(configs, list):
        return None
    index: dict[str, int] = {}
    for i, c in enumerate(configs):
        if isinstance(c, Mapping):
            index.setdefault(canonical({k: v for k, v in c.items() if v is not None}), i)
    names = sorted({k for c in configs if isinstance(c, Mapping) for k in c})

    def key(config: Mapping[str, Any]) -> tuple[Any, ...] | None:
        own = {k: config[k] for k in names if k in config and config[k] is not None}
        i = index.get(canonical(own))
        return None if i is None else (i,)

    return key


def _product_key(a: PlanKey, b: PlanKey) -> PlanKey:
    def key(config: Mapping[str, Any]) -> tuple[Any, ...] | None:
        ka, kb = a(config), b(config)
        return None if ka is None or kb is None else (*ka, *kb)

    return key


def _concat_key(a: PlanKey, b: PlanKey) -> PlanKey:
    # Keys of the two parts differ in length: the part number comes first, so tuples
    # of different parts never need comparing beyond it.
    def key(config: Mapping[str, Any]) -> tuple[Any, ...] | None:
        ka = a(config)
        if ka is not None:
            return (0, *ka)
        kb = b(config)
        return None if kb is None else (1, *kb)

    return key


def _plain(value: Any) -> Any:
    # A param column that also holds missing values reads back as floats: 1.0 is 1.
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


#: Description entries that exist only to rebuild the plan's order.
ORDER_ONLY = ("order", "configs")


def without_order(described: Any) -> Any:
    """A description without its order-only entries (for ``metalab show``)."""
    if isinstance(described, Mapping):
        return {k: without_order(v) for k, v in described.items() if k not in ORDER_ONLY}
    if isinstance(described, list):
        return [without_order(v) for v in described]
    return described
