"""The public surface: ``metalab.__all__`` is sorted and matches the public namespace."""

from __future__ import annotations

import subprocess
import sys
import types

import metalab


def test_all_is_sorted_and_unique():
    assert metalab.__all__ == sorted(metalab.__all__)
    assert len(set(metalab.__all__)) == len(metalab.__all__)


def test_all_matches_public_members():
    """Like encode/httpx tests/test_exported_members.py."""
    public = {
        name
        for name, value in vars(metalab).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name not in ("annotations", "TYPE_CHECKING", "Any")
    }
    exported = set(metalab.__all__) - {"__version__", "Results", "Run"}
    assert public == exported
    for name in metalab.__all__:
        assert getattr(metalab, name) is not None, name


def test_exported_members_belong_to_metalab():
    for name in metalab.__all__:
        member = getattr(metalab, name)
        if isinstance(member, str):
            continue
        mod = getattr(member, "__module__", "")
        assert mod.startswith("metalab"), (name, mod)


def test_lazy_members_and_unknown_attributes():
    from metalab.results import Results, Run

    assert metalab.Results is Results and metalab.Run is Run
    try:
        metalab.does_not_exist  # noqa: B018
    except AttributeError as exc:
        assert "does_not_exist" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_errors_module_exports_every_error():
    from metalab import errors

    names = {
        n
        for n, v in vars(errors).items()
        if isinstance(v, type) and issubclass(v, Exception) and v.__module__ == errors.__name__
    }
    assert set(errors.__all__) == names
    assert errors.__all__ == sorted(errors.__all__)
    for n in names:
        assert n in metalab.__all__, n
        assert issubclass(getattr(errors, n), metalab.MetalabError)


def test_import_metalab_is_light():
    code = (
        "import sys, metalab; "
        "heavy = [m for m in ('pandas', 'pyarrow', 'dask', 'distributed', 'numpy') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
