"""Loading what the command line names: an experiment (``FILE.py:EXP`` or ``MODULE:EXP``)
and an executor (``--executor processes:4`` ...). Used by :mod:`metalab.cli`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CLIError

if TYPE_CHECKING:
    from .executors import Executor
    from .experiment import Experiment


def _import_file(path: Path) -> Any:
    import importlib.util

    name = path.stem if path.stem.isidentifier() else "metalab_user_module"
    folder = str(path.parent.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CLIError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so that worker processes can unpickle its functions
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _describe_import_error(target: str, exc: BaseException) -> str:
    import traceback

    where = ""
    tb = exc.__traceback__
    frames = traceback.extract_tb(tb) if tb is not None else []
    user = [f for f in frames if "importlib" not in f.filename and "metalab/cli" not in f.filename]
    if user:
        where = f" (at {user[-1].filename}:{user[-1].lineno})"
    if isinstance(exc, SyntaxError):
        where = f" (at {exc.filename}:{exc.lineno})"
    return f"error while importing {target}: {type(exc).__name__}: {exc}{where}"


def load_experiment(spec: str) -> Experiment:
    """Load an :class:`~metalab.Experiment` from ``path/to/file.py:name`` or ``pkg.mod:name``.

    Without ``:name`` the module must define exactly one Experiment.
    """
    import importlib

    from .experiment import Experiment

    target, _, attr = spec.partition(":")
    if not target:
        raise CLIError(f"expected FILE.py:EXPERIMENT or MODULE:EXPERIMENT, got {spec!r}")
    as_file = target.endswith(".py") or os.sep in target or "/" in target
    try:
        if as_file:
            path = Path(target)
            if not path.is_file():
                raise CLIError(f"no such file: {target} (expected FILE.py:EXPERIMENT)")
            module = _import_file(path)
        else:
            if "" not in sys.path and os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            try:
                module = importlib.import_module(target)
            except ModuleNotFoundError as exc:
                if exc.name and target.startswith(exc.name):
                    raise CLIError(
                        f"no module named {exc.name!r}; pass an importable module "
                        f"(pkg.mod:exp) or a file path (path/to/file.py:exp)"
                    ) from None
                raise
    except CLIError:
        raise
    except Exception as exc:
        raise CLIError(_describe_import_error(target, exc)) from None

    found = {k: v for k, v in vars(module).items() if isinstance(v, Experiment)}
    if not attr:
        if len(found) == 1:
            return next(iter(found.values()))
        names = ", ".join(sorted(found)) or "none"
        raise CLIError(
            f"{target} defines {len(found)} experiments ({names}); name one: {target}:NAME"
        )
    if not hasattr(module, attr):
        names = ", ".join(sorted(found)) or "none"
        raise CLIError(f"{target} has no attribute {attr!r}; experiments defined there: {names}")
    exp = getattr(module, attr)
    if not isinstance(exp, Experiment):
        raise CLIError(f"{target}:{attr} is of type {type(exp).__name__}, not a metalab.Experiment")
    return exp


def parse_executor(text: str) -> Executor:
    """Build an executor from its command-line text.

    ``local``, ``threads[:N]``, ``processes[:N]``, ``slurm[:JOBS]``, ``pbs[:JOBS]`` or a
    scheduler address (``tcp://host:8786``).
    """
    from . import executors

    name, _, arg = text.partition(":")
    if text.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
        return executors.DaskExecutor(text)

    def count() -> int | None:
        if not arg:
            return None
        if not arg.isdigit() or int(arg) < 1:
            raise CLIError(f"--executor {text}: the worker count must be a positive integer")
        return int(arg)

    if name == "local" and not arg:
        return executors.LocalExecutor()
    if name == "threads":
        return executors.ThreadExecutor(max_workers=count())
    if name == "processes":
        return executors.ProcessExecutor(max_workers=count())
    if name in ("slurm", "pbs"):
        cls_name = "SlurmExecutor" if name == "slurm" else "PBSExecutor"
        cls = getattr(executors, cls_name, None)
        if cls is None:
            raise CLIError(
                f"--executor {name} is not available in this metalab ({cls_name} missing); "
                'install the HPC extra: pip install "metalab[hpc]"'
            )
        n = count()
        return cls() if n is None else cls(jobs=n)  # type: ignore[no-any-return]
    raise CLIError(
        f"unknown executor {text!r}; use local, threads:N, processes:N, slurm[:JOBS], pbs or a "
        "scheduler address such as tcp://127.0.0.1:8786"
    )


def parse_sets(sets: list[str]) -> dict[str, list[Any]]:
    """``["lr=0.1,0.01", "depth=2"]`` -> ``{"lr": [0.1, 0.01], "depth": [2]}``."""
    from .cli_table import parse_value, split_values

    out: dict[str, list[Any]] = {}
    for text in sets:
        name, eq, raw = text.partition("=")
        name = name.strip()
        if not eq or not name or not raw.strip():
            raise CLIError(
                f"--set {text!r}: write NAME=VALUE or NAME=V1,V2,... e.g. --set lr=0.1,0.01"
            )
        out[name] = [parse_value(v) for v in split_values(raw)]
    return out


def _override(source: Any, name: str, values: list[Any]) -> Any:
    """``source`` with param ``name`` taking ``values``; ``None`` when it has no such param."""
    from .params import sources as src

    if isinstance(source, src.Grid):
        if name not in source.axes:
            return None
        return src.Grid(**{**source.axes, name: values})
    if isinstance(source, (src.Concat, src.Product)):
        a, b = _override(source.a, name, values), _override(source.b, name, values)
        if a is None and b is None:
            return None
        return type(source)(source.a if a is None else a, source.b if b is None else b)
    configs = list(source)
    if not any(name in c for c in configs):
        return None
    new: list[dict[str, Any]] = []
    for c in configs:  # every configuration with the param, once per value
        for v in values if name in c else [None]:
            item = {**c, name: v} if name in c else c
            if item not in new:
                new.append(item)
    return src.Manual(new)


def apply_sets(exp: Experiment, sets: list[str]) -> Experiment:
    """The experiment with ``--set NAME=V1,V2`` overrides applied to its param source.

    A grid axis is replaced by the listed values.  In any other source (manual, random)
    every configuration holding the param runs once per listed value, its other values
    unchanged (a random search keeps its draws), as a manual list.
    """
    from .experiment import Experiment

    source = exp.params
    for name, values in parse_sets(sets).items():
        new = _override(source, name, values)
        if new is None:
            known = sorted({k.split(".", 1)[0] for k in source.column_kinds()})
            raise CLIError(f"--set {name}: the experiment has no param {name!r}; params: {known}")
        source = new
    return Experiment(
        name=exp.name,
        operation=exp.operation,
        params=source,
        seeds=exp.seeds,
        context=exp.context,
        version=exp.version,
        description=exp.description,
    )
