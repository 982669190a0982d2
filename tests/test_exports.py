"""The public surface: ``metalab.__all__`` is sorted, matches the namespace, and every
exported function is the real thing with its real signature."""

from __future__ import annotations

import inspect
import subprocess
import sys
import types

import pytest

import metalab
from metalab import errors


def _public_names() -> set[str]:
    """Every public name of the namespace, lazy ones included (modules are not members)."""
    return {
        name
        for name in dir(metalab)
        if not name.startswith("_") and not isinstance(getattr(metalab, name), types.ModuleType)
    }


def test_all_is_sorted_and_unique():
    assert metalab.__all__ == sorted(metalab.__all__)
    assert len(set(metalab.__all__)) == len(metalab.__all__)


def test_all_matches_public_members():
    """Like encode/httpx tests/test_exported_members.py: no exclusion list."""
    assert set(metalab.__all__) == _public_names() | {"__version__"}
    for name in metalab.__all__:
        assert getattr(metalab, name) is not None, name


def test_exported_members_belong_to_metalab():
    for name in metalab.__all__:
        member = getattr(metalab, name)
        if isinstance(member, str):
            continue
        mod = getattr(member, "__module__", "")
        assert mod.startswith("metalab."), (name, mod)


def test_front_door_is_the_real_function_with_keyword_only_options():
    from metalab.results.results import load_results
    from metalab.sweep.sweep import run

    assert metalab.run is run and metalab.load_results is load_results
    sig = inspect.signature(metalab.run)
    params = list(sig.parameters.values())
    assert params[0].name == "experiment"
    assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    options = params[1:]
    assert {"executor", "store", "resume", "progress", "timeout", "retries"} <= {
        p.name for p in options
    }
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in options)
    loader = list(inspect.signature(metalab.load_results).parameters.values())
    assert [p.name for p in loader] == ["path", "definitions", "storage_options"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in loader[1:])


#: The only variadic keywords of the public API, each passing names the user chooses.
VAR_KEYWORDS = {
    ("grid", "axes"),  # grid(lr=[...], depth=[...]): the axis names are the user's
    ("Results.filter", "equals"),  # filter(lr=0.1): column names are the user's
    ("Results.to_csv", "kwargs"),  # forwarded to pandas.DataFrame.to_csv
    ("Operation.__call__", "kwargs"),  # calls the user's function unchanged
    ("ProcessExecutor", "cluster_kwargs"),  # forwarded to distributed.LocalCluster
    ("SlurmExecutor", "cluster_kwargs"),  # forwarded to dask_jobqueue.SLURMCluster
    ("PBSExecutor", "cluster_kwargs"),  # forwarded to dask_jobqueue.PBSCluster
}


def _callables() -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for name in metalab.__all__:
        member = getattr(metalab, name)
        if isinstance(member, type) and issubclass(member, BaseException):
            continue
        if inspect.isfunction(member) or isinstance(member, type):
            out.append((name, member))
        if isinstance(member, type):
            for attr, value in vars(member).items():
                if attr.startswith("_") and attr != "__call__":
                    continue
                if isinstance(value, (staticmethod, classmethod)):
                    value = value.__func__
                if inspect.isfunction(value) and not (
                    value.__name__.startswith("_") and not attr.startswith("_")
                ):  # (a public name bound to a private refuser, e.g. FrozenContext.update)
                    out.append((f"{name}.{attr}", value))
    return out


def _cases() -> list[object]:
    return [pytest.param(q, f, id=q) for q, f in _callables()]


@pytest.mark.parametrize(("qualname", "func"), _cases())
def test_no_kwargs_wrappers_and_no_positional_booleans(qualname, func):
    sig = inspect.signature(func)
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            assert (qualname, p.name) in VAR_KEYWORDS, f"{qualname}(**{p.name}) hides options"
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            is_bool = isinstance(p.default, bool) or p.annotation in (bool, "bool")
            assert not is_bool, f"{qualname}: boolean {p.name!r} must be keyword-only"


def test_frozen_context_blocks_mutation_with_varargs():
    # FrozenContext's mutators take (*args, **kwargs) only to refuse any call.
    with pytest.raises(metalab.FrozenContextError):
        metalab.FrozenContext({"a": 1}).update(a=2)


def test_lazy_members_and_unknown_attributes():
    from metalab.results import Results, Run

    assert metalab.Results is Results and metalab.Run is Run
    with pytest.raises(AttributeError, match="does_not_exist"):
        metalab.does_not_exist  # noqa: B018


def test_version_is_the_installed_distribution_version():
    from importlib.metadata import version

    assert metalab.__version__ == version("metalab")


def test_errors_module_exports_every_error_and_warning():
    names = {
        n
        for n, v in vars(errors).items()
        if isinstance(v, type) and issubclass(v, BaseException) and v.__module__ == errors.__name__
    }
    assert set(errors.__all__) == names
    assert errors.__all__ == sorted(errors.__all__)
    for n in names:
        assert n in metalab.__all__, n
        cls = getattr(errors, n)
        if issubclass(cls, Warning):
            assert issubclass(cls, metalab.MetalabWarning), n
        elif cls is not metalab.RunInterrupted:
            assert issubclass(cls, metalab.MetalabError), n


def test_errors_and_warnings_keep_their_old_import_paths():
    from metalab.cli import CLIError
    from metalab.provenance import SourceChangedWarning
    from metalab.store import DamagedFileWarning

    assert CLIError is metalab.CLIError
    assert SourceChangedWarning is metalab.SourceChangedWarning
    assert DamagedFileWarning is metalab.DamagedFileWarning


def test_import_metalab_is_light():
    code = (
        "import sys, metalab; "
        "heavy = [m for m in ('pandas', 'pyarrow', 'dask', 'distributed', 'numpy', "
        "'importlib.metadata') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
