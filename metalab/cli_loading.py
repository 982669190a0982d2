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
