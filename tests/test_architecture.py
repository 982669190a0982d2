"""Rules of the package layout, read from the source of ``metalab/`` (issue 12).

Each rule is a function from source text to a list of offences, so that
``test_rules_catch_offences`` can feed it a small broken package and see it fail.

The import graph
    Every ``import`` and ``from ... import`` counts, at module level and inside
    functions (a function-level import defers a cycle to run time, it does not remove
    it), except under ``if TYPE_CHECKING:``.  ``from pkg import name`` is an edge to
    ``pkg.name`` when that is a module, else to ``pkg``.

    Package ``__init__`` edges: importing ``a.b.c`` first runs ``a/__init__.py`` and
    ``a/b/__init__.py``, so each of those packages is an edge as well, *except* the
    packages that contain the importing module: they are always in ``sys.modules``
    (being initialised) before the importer runs, so passing through them runs
    nothing.  An import of a *name* from an enclosing package (``from metalab import
    Results`` inside ``metalab.report``) is still an edge: it needs that
    ``__init__`` to have run.  So ``store.journal -> results.scan`` is really
    ``store.journal -> results/__init__ -> results.results -> ...`` and a cycle
    through a package ``__init__`` that only re-exports is reported when it is a
    runtime cycle.

Private names
    ``_y`` defined in a module belongs to that module's package: it may be used by
    the modules of the same package (siblings), not from another package (a
    subpackage or the parent count as other packages).  A private *module*
    (``metalab._hashing``, ``metalab.report._data``) is private to the package that
    holds it, including its subpackages.  Three ways of using a name are checked:
    ``from x import _y``, ``x._y`` on a name bound by an import (a module or a class),
    and, by name, ``obj._y`` on any other object when ``_y`` is defined as an
    attribute or method of a class only in other packages of metalab (an
    instance's private state read from outside its package).

Sizes
    A module has at most 600 lines; a function at most 60 lines of code: lines with
    a token that is not a comment, without its docstring or those of nested
    definitions.

Docstrings
    Every module has a docstring; in every public module (no ``_`` in its dotted
    name), every public class and function, and every public method or property of
    a public class, has one (a method may inherit it from the method it overrides).
    Objects exported in ``metalab.__all__`` are checked wherever they are defined.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import io
import itertools
import textwrap
import tokenize
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import metalab

ROOT = Path(metalab.__file__).parent
PACKAGE = "metalab"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60


# ---------------------------------------------------------------------------------
# Reading the package
# ---------------------------------------------------------------------------------


@dataclass
class Module:
    """One source file: its dotted name, whether it is a package ``__init__``, its text."""

    name: str
    is_package: bool
    path: str
    source: str
    tree: ast.Module = field(init=False)

    def __post_init__(self) -> None:
        self.tree = ast.parse(self.source, filename=self.path)

    @property
    def package(self) -> str:
        """The package this module belongs to (a package ``__init__`` is its own)."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def module_name(rel: Path, top: str) -> tuple[str, bool]:
    """``sweep/sweep.py`` -> (``metalab.sweep.sweep``, False); ``x/__init__.py`` -> package."""
    parts = [top, *rel.with_suffix("").parts]
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def load_package(root: Path, top: str) -> dict[str, Module]:
    """Every ``.py`` file under ``root``, by dotted module name."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        name, is_package = module_name(path.relative_to(root), top)
        text = path.read_text(encoding="utf-8")
        out[name] = Module(name, is_package, str(path.relative_to(root.parent)), text)
    return out


def load_sources(files: dict[str, str], top: str = "pkg") -> dict[str, Module]:
    """A package from ``{"a/b.py": source}`` (for the tests that break the rules)."""
    out = {}
    for rel, text in files.items():
        name, is_package = module_name(Path(rel), top)
        out[name] = Module(name, is_package, f"{top}/{rel}", textwrap.dedent(text))
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def walk_runtime(node: ast.AST) -> Iterator[ast.AST]:
    """``ast.walk`` without the bodies of ``if TYPE_CHECKING:`` (their ``else`` is kept)."""
    todo = [node]
    while todo:
        n = todo.pop()
        yield n
        if isinstance(n, ast.If) and _is_type_checking(n.test):
            todo.extend(n.orelse)
            continue
        todo.extend(ast.iter_child_nodes(n))


def resolve_from(mod: Module, node: ast.ImportFrom) -> str:
    """The absolute module name of ``from <node.module> import ...`` written in ``mod``."""
    if not node.level:
        return node.module or ""
    base = mod.package.split(".")
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


@dataclass(frozen=True)
class Import:
    """One imported thing: the module it comes from and, for ``from`` imports, the name."""

    line: int
    module: str  # a module of the package, the deepest one the import names
    name: str | None  # ``from module import name`` when ``name`` is not a module
    bound: str | None  # the local name it is bound to


def imports(mod: Module, mods: dict[str, Module], top: str) -> Iterator[Import]:
    """The imports of package modules in ``mod`` (runtime ones only)."""
    for node in walk_runtime(mod.tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == top or a.name.startswith(top + "."):
                    bound = a.asname or a.name.split(".")[0]
                    yield Import(node.lineno, a.name, None, bound)
        elif isinstance(node, ast.ImportFrom):
            source = resolve_from(mod, node)
            if source != top and not source.startswith(top + "."):
                continue
            for a in node.names:
                sub = f"{source}.{a.name}"
                if sub in mods:
                    yield Import(node.lineno, sub, None, a.asname or a.name)
                else:
                    yield Import(node.lineno, source, a.name, a.asname or a.name)


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(mods: dict[str, Module], top: str) -> dict[str, dict[str, int]]:
    """``{importer: {imported: first line}}`` over the package's modules."""
    graph: dict[str, dict[str, int]] = {m: {} for m in mods}
    for mod in mods.values():
        enclosing = {*_ancestors(mod.name), mod.name}
        for imp in imports(mod, mods, top):
            targets = [p for p in _ancestors(imp.module) if p not in enclosing]
            if imp.module not in enclosing or imp.name is not None:
                targets.append(imp.module)
            for t in targets:
                if t in mods and t != mod.name:
                    graph[mod.name].setdefault(t, imp.line)
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Shortest cycles through every module that is on one (Tarjan, then BFS)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    cycles: set[tuple[str, ...]] = set()
    for comp in components:
        for start in comp:  # a shortest cycle through each member, so none is hidden
            cycle = _shortest_cycle(graph, set(comp), start)
            i = cycle.index(min(cycle[:-1]))
            cycles.add((*cycle[i:-1], *cycle[:i], cycle[i]))  # rotated to start at min
    return sorted(list(c) for c in cycles)


def _shortest_cycle(graph: dict[str, dict[str, int]], members: set[str], start: str) -> list[str]:
    paths = {start: [start]}
    todo = [start]
    while todo:  # BFS inside the component, back to start
        v = todo.pop(0)
        for w in sorted(graph[v]):
            if w == start:
                return [*paths[v], start]
            if w in members and w not in paths:
                paths[w] = [*paths[v], w]
                todo.append(w)
    raise AssertionError(f"{start} is in a strongly connected component but on no cycle")


def cycle_offences(mods: dict[str, Module], top: str) -> list[str]:
    """Each import cycle as ``a (line 3) -> b (line 9) -> a``."""
    graph = import_graph(mods, top)
    out = []
    for cycle in find_cycles(graph):
        steps = [f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(cycle)]
        out.append(" -> ".join([*steps, cycle[-1]]))
    return out


# ---------------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------------

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, *_DEFS)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                end = body[0].end_lineno or body[0].lineno
                lines.update(range(body[0].lineno, end + 1))
    return lines


def _code_lines(source: str) -> set[int]:
    """Lines holding a token that is not a comment (a string spans all its lines)."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip and tok.type != tokenize.ENDMARKER:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return lines


def size_offences(mods: dict[str, Module]) -> list[str]:
    """Modules over ``MAX_MODULE_LINES`` lines, functions over ``MAX_FUNCTION_LINES`` of code."""
    out = []
    for mod in mods.values():
        n = len(mod.source.splitlines())
        if n > MAX_MODULE_LINES:
            out.append(f"{mod.path}: {n} lines (max {MAX_MODULE_LINES})")
        code = _code_lines(mod.source) - _docstring_lines(mod.tree)
        for node in ast.walk(mod.tree):
            if isinstance(node, _DEFS):
                end = node.end_lineno or node.lineno
                count = len(code & set(range(node.lineno, end + 1)))
                if count > MAX_FUNCTION_LINES:
                    out.append(
                        f"{mod.path}:{node.lineno} {node.name}(): {count} lines of code "
                        f"(max {MAX_FUNCTION_LINES})"
                    )
    return out


# ---------------------------------------------------------------------------------
# Private names
# ---------------------------------------------------------------------------------


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_module_offence(user: Module, target: str) -> str | None:
    """The first private component of ``target`` whose package does not hold ``user``."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if _is_private(part):
            owner = ".".join(parts[:i])
            if user.package != owner and not user.package.startswith(owner + "."):
                return ".".join(parts[: i + 1])
    return None


def _class_private_names(mods: dict[str, Module]) -> dict[str, set[str]]:
    """``{_name: packages}`` for private attributes and methods defined on classes."""
    owners: dict[str, set[str]] = {}
    for mod in mods.values():
        for cls in ast.walk(mod.tree):
            if not isinstance(cls, ast.ClassDef):
                continue
            names: set[str] = set()
            for node in ast.walk(cls):
                if isinstance(node, (*_DEFS, ast.ClassDef)) and node is not cls:
                    names.add(node.name)
                elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                    if isinstance(node.value, ast.Name) and node.value.id == "self":
                        names.add(node.attr)
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    names.add(node.value)  # __slots__ entries, object.__setattr__ names
            for n in names:
                if _is_private(n):
                    owners.setdefault(n, set()).add(mod.package)
    return owners


def private_offences(mods: dict[str, Module], top: str) -> list[str]:
    """Private names of one package used from another (see the module docstring)."""
    class_owners = _class_private_names(mods)
    found: list[tuple[str, int, str]] = []
    for mod in mods.values():
        bound: dict[str, str] = {}  # local name -> module it names, or module.name it takes
        for imp in imports(mod, mods, top):
            target = imp.module if imp.name is None else f"{imp.module}.{imp.name}"
            bad_module = _private_module_offence(mod, imp.module)
            owner = mods.get(imp.module)
            if bad_module:
                found.append((mod.path, imp.line, f"imports from the private module {bad_module}"))
            elif imp.name and _is_private(imp.name) and owner and owner.package != mod.package:
                found.append((mod.path, imp.line, f"imports {target}, private to {owner.package}"))
            if imp.bound:
                bound[imp.bound] = target
        for node in walk_runtime(mod.tree):
            if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
                continue
            value = node.value
            if isinstance(value, ast.Name) and value.id in bound:
                name = bound[value.id]
                owner = mods.get(name) or mods.get(name.rpartition(".")[0])
                if owner and owner.package != mod.package:
                    what = f"uses {name}.{node.attr}, private to {owner.package}"
                    found.append((mod.path, node.lineno, what))
                continue
            if isinstance(value, ast.Name) and value.id in ("self", "cls"):
                continue
            packages = class_owners.get(node.attr, set())
            if packages and mod.package not in packages:
                what = f"reads .{node.attr}, a private attribute from {', '.join(sorted(packages))}"
                found.append((mod.path, node.lineno, what))
    return [f"{path}:{line} {what}" for path, line, what in sorted(found)]


# ---------------------------------------------------------------------------------
# Docstrings
# ---------------------------------------------------------------------------------


def _has_doc(node: ast.AST) -> bool:
    return isinstance(node, (ast.Module, ast.ClassDef, *_DEFS)) and bool(ast.get_docstring(node))


def _is_overload_or_setter(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for d in node.decorator_list:
        if isinstance(d, ast.Name) and d.id == "overload":
            return True
        if isinstance(d, ast.Attribute) and d.attr in ("setter", "deleter", "overload"):
            return True
    return False


def missing_docstrings(
    mods: dict[str, Module], exported: Collection[tuple[str, str]] = ()
) -> list[tuple[str, str | None, str]]:
    """``(module, class or None, name)`` of each public definition without a docstring.

    ``exported`` holds ``(module, name)`` pairs checked even in private modules.
    """
    out: list[tuple[str, str | None, str]] = []
    for mod in mods.values():
        if not _has_doc(mod.tree):
            out.append((mod.name, None, "<module>"))
        public_module = not any(_is_private(p) for p in mod.name.split("."))
        for node in mod.tree.body:
            if not isinstance(node, (ast.ClassDef, *_DEFS)) or _is_private(node.name):
                continue
            if not (public_module or (mod.name, node.name) in exported):
                continue
            if node.name.startswith("__"):
                continue
            if not _has_doc(node):
                out.append((mod.name, None, node.name))
            if not isinstance(node, ast.ClassDef):
                continue
            for item in node.body:
                if isinstance(item, _DEFS) and not item.name.startswith("_"):
                    if not _has_doc(item) and not _is_overload_or_setter(item):
                        out.append((mod.name, node.name, item.name))
    return out


def _inherits_doc(module: str, cls: str, name: str) -> bool:
    """True when the method overrides one that has a docstring (as ``help()`` shows it)."""
    klass = getattr(importlib.import_module(module), cls)
    for base in klass.__mro__[1:]:
        if base is not object and getattr(base, name, None) is not None:
            return bool(inspect.getdoc(getattr(base, name)))
    return False


def docstring_offences(mods: dict[str, Module], exported: Collection[tuple[str, str]]) -> list[str]:
    """Public definitions without a docstring, as ``module.Class.name``."""
    out = []
    for module, cls, name in missing_docstrings(mods, exported):
        if cls is not None and _inherits_doc(module, cls, name):
            continue
        out.append(".".join(p for p in (module, cls, name) if p))
    return out


def exported_definitions() -> set[tuple[str, str]]:
    """``(defining module, name)`` of every object in ``metalab.__all__``."""
    out = set()
    for name in metalab.__all__:
        obj = getattr(metalab, name)
        module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None)
        if module and qualname and module.startswith(PACKAGE):
            out.add((module, qualname.split(".")[0]))
    return out


# ---------------------------------------------------------------------------------
# The rules, on metalab
# ---------------------------------------------------------------------------------

MODULES = load_package(ROOT, PACKAGE)


def _report(offences: list[str], what: str) -> str:
    return f"{len(offences)} {what}:\n  " + "\n  ".join(offences)


def test_the_package_is_read_whole():
    assert "metalab.sweep.sweep" in MODULES and "metalab.store" in MODULES
    assert MODULES["metalab.store"].is_package
    assert len(MODULES) >= 40


def test_no_import_cycles():
    offences = cycle_offences(MODULES, PACKAGE)
    assert not offences, _report(offences, "import cycles")


def test_module_and_function_sizes():
    offences = size_offences(MODULES)
    assert not offences, _report(offences, "too long")


def test_no_private_names_across_packages():
    offences = private_offences(MODULES, PACKAGE)
    assert not offences, _report(offences, "uses of another package's private names")


def test_public_definitions_have_docstrings():
    offences = docstring_offences(MODULES, exported_definitions())
    assert not offences, _report(offences, "public definitions without a docstring")


# ---------------------------------------------------------------------------------
# Each rule fails when broken (a small package written for the purpose)
# ---------------------------------------------------------------------------------


def test_cycle_rule_sees_module_function_and_package_init_edges():
    mods = load_sources(
        {
            "__init__.py": '"""Root."""\nfrom .a import f\n',
            "a.py": '"""A."""\nfrom .b import g\ndef f():\n    """F."""\n',
            "b.py": '"""B."""\ndef g():\n    """G."""\n    from .a import f\n',
            "sub/__init__.py": '"""Sub, re-exports only."""\nfrom .x import h\n',
            "sub/x.py": '"""X."""\nfrom ..c import k\ndef h():\n    """H."""\n',
            "c.py": '"""C."""\nfrom .sub.y import m\ndef k():\n    """K."""\n',
            "sub/y.py": '"""Y."""\nm = 1\n',
            "typed.py": (
                '"""Typed."""\nfrom typing import TYPE_CHECKING\n'
                "if TYPE_CHECKING:\n    from .d import D\n"
            ),
            "d.py": '"""D."""\nfrom .typed import TYPE_CHECKING\n',
        }
    )
    offences = cycle_offences(mods, "pkg")
    # a <-> b through a function-level import; c -> sub/__init__ -> sub.x -> c although
    # c imports only sub.y: running sub/__init__ is part of importing sub.y.
    assert offences == [
        "pkg.a (line 2) -> pkg.b (line 4) -> pkg.a",
        "pkg.c (line 2) -> pkg.sub (line 2) -> pkg.sub.x (line 2) -> pkg.c",
    ]
    # Going up to an enclosing package for a submodule is not a cycle ...
    mods = load_sources(
        {
            "__init__.py": '"""Root."""\nfrom .sub.x import h\n',
            "sub/__init__.py": '"""Sub."""\n',
            "sub/x.py": '"""X."""\nfrom .. import errors\nfrom ..errors import E\n',
            "errors.py": '"""Errors."""\nclass E(Exception):\n    """E."""\n',
        }
    )
    assert cycle_offences(mods, "pkg") == []
    # ... but taking a name from it is.
    mods["pkg.sub.x"] = load_sources({"sub/x.py": '"""X."""\nfrom .. import h\n'})["pkg.sub.x"]
    assert cycle_offences(mods, "pkg") == ["pkg (line 2) -> pkg.sub.x (line 2) -> pkg"]


def test_size_rule_counts_code_lines_only():
    def body(n: int) -> str:
        return "".join(f"    x{i} = {i}\n" for i in range(n))

    padding = '    """Doc\n\n    more doc.\n    """\n    # a comment\n\n'
    # The def line counts; the docstring, the comment and the blank line do not.
    ok = f"def f():\n{padding}{body(MAX_FUNCTION_LINES - 2)}    return 1\n"
    too_long = f"def g():\n{padding}{body(MAX_FUNCTION_LINES - 1)}    return 1\n"
    nested = f"def h():\n    def inner():\n{textwrap.indent(body(MAX_FUNCTION_LINES), '    ')}"
    mods = load_sources(
        {
            "ok.py": ok,
            "long.py": too_long,
            "nested.py": nested,
            "big.py": "x = 1\n" * (MAX_MODULE_LINES + 1),
            "fine.py": "x = 1\n" * MAX_MODULE_LINES,
        }
    )
    assert sorted(size_offences(mods)) == [
        "pkg/big.py: 601 lines (max 600)",
        "pkg/long.py:1 g(): 61 lines of code (max 60)",
        "pkg/nested.py:1 h(): 62 lines of code (max 60)",
        "pkg/nested.py:2 inner(): 61 lines of code (max 60)",
    ]


def test_private_rule_sees_imports_module_attributes_and_instance_state():
    mods = load_sources(
        {
            "__init__.py": '"""Root."""\n',
            "_impl.py": '"""Private module of pkg."""\ndef helper():\n    """H."""\n',
            "store/__init__.py": '"""Store."""\n',
            "store/reader.py": (
                '"""Reader."""\ndef _read(): ...\n'
                'class Reader:\n    """R."""\n    def __init__(self):\n        self._state = 1\n'
            ),
            "store/store.py": (
                '"""Siblings may share privates."""\nfrom .reader import _read\n'
                "from . import reader\nreader._read()\nfrom .._impl import helper\n"
            ),
            "store/_local.py": '"""Private to store."""\n',
            "results/__init__.py": '"""Results."""\n',
            "results/scan.py": (
                '"""Scan."""\nfrom ..store.reader import _read, Reader\n'
                "from ..store import reader\nimport os\n"
                "def f(r):\n    reader._read()\n    Reader._state\n    os._exit(0)\n"
                "    return r._state\n"
                "from ..store import _local\n"
            ),
        }
    )
    assert private_offences(mods, "pkg") == [
        "pkg/results/scan.py:2 imports pkg.store.reader._read, private to pkg.store",
        "pkg/results/scan.py:6 uses pkg.store.reader._read, private to pkg.store",
        "pkg/results/scan.py:7 uses pkg.store.reader.Reader._state, private to pkg.store",
        "pkg/results/scan.py:9 reads ._state, a private attribute from pkg.store",
        "pkg/results/scan.py:10 imports from the private module pkg.store._local",
    ]


def test_docstring_rule_sees_modules_classes_functions_and_methods():
    mods = load_sources(
        {
            "__init__.py": "x = 1\n",
            "api.py": (
                '"""Api."""\ndef f(): ...\ndef _g(): ...\n'
                'class C:\n    """C."""\n    def m(self): ...\n    def _p(self): ...\n'
                '    @property\n    def v(self):\n        """V."""\n'
                "    @v.setter\n    def v(self, value): ...\n"
                "class _Hidden:\n    def m(self): ...\n"
            ),
            "_private.py": '"""P."""\ndef shown(): ...\ndef hidden(): ...\n',
        }
    )
    assert missing_docstrings(mods, {("pkg._private", "shown")}) == [
        ("pkg", None, "<module>"),
        ("pkg.api", None, "f"),
        ("pkg.api", "C", "m"),
        ("pkg._private", None, "shown"),
    ]
