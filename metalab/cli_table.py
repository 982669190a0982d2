"""``metalab table`` and ``run`` tables: filters, metric selection, reductions, row order.

Used by :mod:`metalab.cli`.  Values on the command line are read "JSON-ish": ``0.1`` and
``2`` are numbers, ``true``/``false``/``null`` are JSON, anything else is a string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import CLIError

if TYPE_CHECKING:
    import pandas as pd

    from .results import Results


_FILTER = re.compile(r"^\s*([^=!<>\s]+)\s*(==|=|!=|>=|<=|>|<)\s*(.*?)\s*$")


def parse_value(text: str) -> Any:
    """``0.1`` -> 0.1, ``true`` -> True, ``"a"`` or ``a`` -> "a"."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def split_values(text: str) -> list[str]:
    """``0.1,0.01`` -> ``["0.1", "0.01"]``; commas inside ``[]``, ``{}`` or quotes stay."""
    parts, depth, quote, cur = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


def apply_filters(results: Results, filters: Sequence[str]) -> Results:
    """``--filter lr=0.1`` (one of ``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``), ANDed."""
    known = [*results.param_names(), *results.metric_names(), "status", "replicate"]
    for text in filters:
        m = _FILTER.match(text)
        if m is None or not m.group(3):
            raise CLIError(
                f"--filter {text!r}: write NAME=VALUE or NAME>VALUE (also !=, <, <=, >=), "
                "e.g. --filter lr=0.1 --filter 'score>0.5'"
            )
        name, op, raw = m.groups()
        if name not in known:
            raise CLIError(f"--filter {text!r}: no column {name!r}; columns: {known}")
        if op in ("=", "=="):
            values = [parse_value(v) for v in split_values(raw)]
            results = results.filter(**{name: values if len(values) > 1 else values[0]})
        else:
            results = results.query(f"`{name}` {op} {parse_value(raw)!r}")
    return results


def check_names(option: str, names: Sequence[str], known: Sequence[str], what: str) -> None:
    """A :class:`CLIError` naming the first unknown name and the known ones."""
    bad = [n for n in names if n not in known]
    if bad:
        raise CLIError(f"{option} {bad[0]}: no such {what}; {what}s: {list(known)}")


def plan_order(
    frame: pd.DataFrame, manifest: dict[str, Any], params: Sequence[str]
) -> pd.DataFrame:
    """Rows in the experiment's plan order, then by replicate.

    The store keeps no plan index and workers finish in any order, so the order is
    rebuilt from the manifest's description of the params (:mod:`metalab.params.order`):
    grid axes in the order given, values in the order listed, a manual list's order, a
    product's and a concatenation's parts.  Runs it cannot place (a random source, an
    older definition) follow, by param value.
    """
    from .params.order import plan_key

    present = [p for p in params if p in frame.columns]
    key = plan_key(manifest.get("params"))
    reps = frame["replicate"].tolist() if "replicate" in frame.columns else [0] * len(frame)
    keys = [key(c) if key else None for c in _configs(frame, present)]
    placed = [i for i, k in enumerate(keys) if k is not None]
    try:
        placed.sort(key=lambda i: (keys[i], reps[i]))
    except TypeError:  # a description that does not fit these rows: keep the store order
        return frame
    rest = [i for i, k in enumerate(keys) if k is None]
    ordered = frame.iloc[placed + _value_order(frame.iloc[rest], present, rest)]
    return ordered.reset_index(drop=True)


def _configs(frame: pd.DataFrame, params: Sequence[str]) -> list[dict[str, Any]]:
    """Each row's params as a nested dict (table columns are dotted paths)."""
    out: list[dict[str, Any]] = []
    columns = [(p, p.split(".")) for p in params]
    for values in zip(*(frame[p].tolist() for p in params), strict=True):
        config: dict[str, Any] = {}
        for (_, path), v in zip(columns, values, strict=True):
            if v is None or (isinstance(v, float) and v != v):
                continue  # a param this run does not have
            node = config
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = v
        out.append(config)
    return out if params else [{} for _ in range(len(frame))]


def _value_order(frame: pd.DataFrame, params: Sequence[str], index: list[int]) -> list[int]:
    """``index`` (positions of ``frame``'s rows) ordered by param values, then replicate."""
    keys = [*params, "replicate"] if "replicate" in frame.columns else list(params)
    if not keys or len(index) < 2:
        return index
    try:
        order = frame.assign(__pos=index).sort_values(keys, kind="stable", na_position="last")
    except TypeError:  # mixed types in a column: keep the store order
        return index
    return [int(i) for i in order["__pos"]]


def sort_rows(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``--sort score`` ascending, ``--sort=-score`` descending; several keys in order."""
    names = [k.lstrip("-") for k in keys]
    check_names("--sort", names, list(frame.columns), "column")
    ascending = [not k.startswith("-") for k in keys]
    return frame.sort_values(names, ascending=ascending, kind="stable").reset_index(drop=True)


def render(frame: pd.DataFrame, max_rows: int) -> str:
    """The frame as text: run ids shortened, the middle of a long table left out."""
    from .store.records import RUN_ID

    n = len(frame)
    if n == 0:
        return "(no runs)"
    half = max_rows // 2
    if n > max_rows:
        frame = frame.iloc[list(range(half)) + list(range(n - half, n))]
    frame = frame.copy()
    if RUN_ID in frame.columns:
        frame[RUN_ID] = frame[RUN_ID].astype(str).str.slice(0, 8)
    text: str = frame.to_string(index=False, float_format=lambda x: f"{x:.6g}")
    if n > max_rows:
        lines = text.splitlines()
        lines.insert(half + 1, f"... {n - 2 * half} more runs ...")
        text = "\n".join(lines)
    return text


def table_frame(results: Results, args: Any, manifest: dict[str, Any]) -> Any:
    """The runs as a DataFrame for ``metalab table`` (no grouping), in parameter order.

    A stepped metric is one number per run, named for its reduction (``loss[last]``).
    """
    from .results.naming import TABLE_DROPPED

    reduce = args.reduce or "last"
    frame = results.table(as_dataframe=True, reduce=reduce)
    frame = frame[[c for c in frame.columns if c not in TABLE_DROPPED]]
    frame = plan_order(frame, manifest, results.param_names())
    if args.metrics:
        metrics = results.metric_names()
        check_names("--metrics", args.metrics, metrics, "metric")
        suffix = f"[{reduce}]"

        def metric_of(column: str) -> str:
            return column[: -len(suffix)] if column.endswith(suffix) else column

        drop = [
            c for c in frame.columns if metric_of(c) in metrics and metric_of(c) not in args.metrics
        ]
        frame = frame.drop(columns=drop)
    return frame


def summary_frame(results: Results, args: Any) -> Any:
    """The ``--group-by`` summary (``Results.summary``), stepped metrics reduced by ``--reduce``."""
    params = results.param_names()
    check_names("--group-by", args.group_by, params, "parameter")
    kwargs: dict[str, Any] = {"metrics": args.metrics} if args.metrics else {}
    if args.stats:
        kwargs["stats"] = args.stats
    if args.metrics:
        check_names("--metrics", args.metrics, results.metric_names(), "metric")
    return results.summary(group_by=args.group_by, reduce=args.reduce or "last", **kwargs)


def plan_table(result: Results, exp: Any, max_rows: int) -> str:
    """The runs of ``exp`` in plan order (workers finish in any order)."""
    from .results.naming import TABLE_DROPPED
    from .store.records import RUN_ID

    frame = result.to_pandas()
    order = {rid: i for i, rid in enumerate(exp.plan()[RUN_ID])}
    frame = frame.sort_values(RUN_ID, key=lambda c: c.map(order), kind="stable")
    return render(frame[[c for c in frame.columns if c not in TABLE_DROPPED]], max_rows)
