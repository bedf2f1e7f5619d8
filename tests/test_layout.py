"""The package's shape: imports flow one way, modules stay small, errors live in one place."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import runcomfy_async
from runcomfy_async import _errors

PACKAGE = Path(runcomfy_async.__file__).parent
MAX_MODULE_LINES = 500
MAX_CLIENT_LINES = 450


def _module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(path: Path, root: Path = PACKAGE) -> set[str]:
    """Modules of the package that ``path`` imports when it runs (not for type checking)."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join([*base, node.module] if node.module else base)
                else:
                    target = node.module or ""
                if target.startswith(root.name):
                    found.add(target)
                    for alias in node.names:  # `from . import _x` imports a module
                        found.add(f"{target}.{alias.name}")
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith(root.name))
            elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                # try/with/if blocks at module level run on import; function bodies do not.
                for field in ("body", "orelse", "finalbody"):
                    visit([n for n in getattr(node, field, []) if isinstance(n, ast.stmt)])
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def _graph(root: Path) -> dict[str, set[str]]:
    modules = {_module_name(p, root): p for p in root.rglob("*.py")}
    return {
        name: (_runtime_imports(path, root) & modules.keys()) - {name}
        for name, path in modules.items()
    }


def _cycles(root: Path) -> list[list[str]]:
    graph = _graph(root)
    # A package's __init__ re-exports its children: an edge child → package is how Python
    # runs ``from .pkg import x``, not a cycle of concerns, so only module-level cycles count.
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if target.startswith(node + "."):
                continue  # a package importing its own children
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                walk(target, [*path, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    return cycles


def test_no_import_cycle() -> None:
    """No module of the package imports, at run time, a module that imports it back."""
    assert _cycles(PACKAGE) == []


def test_the_walker_sees_a_cycle(tmp_path: Path) -> None:
    """A relative-import cycle is found; one closed only under TYPE_CHECKING is not."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "_a.py").write_text("from ._b import x\n")
    (pkg / "_b.py").write_text("try:\n    from .sub._c import y\nexcept ImportError:\n    pass\n")
    (pkg / "sub" / "_c.py").write_text("from .. import _a\n")
    (pkg / "_d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._e import z\n"
    )
    (pkg / "_e.py").write_text("from ._d import w\n")
    assert _cycles(pkg) == [["pkg._a", "pkg._b", "pkg.sub._c", "pkg._a"]]


def test_modules_are_small() -> None:
    """No module passes 500 lines, and the client (docstrings included) stays at 450."""
    sizes = {
        _module_name(p): len(p.read_text(encoding="utf-8").splitlines())
        for p in PACKAGE.rglob("*.py")
    }
    assert {m: n for m, n in sizes.items() if n > MAX_MODULE_LINES} == {}
    assert sizes["runcomfy_async._client"] <= MAX_CLIENT_LINES


def test_every_public_exception_is_defined_in_errors() -> None:
    """Each exception class the package exports is defined in _errors.py, and drawn there."""
    exported = [
        getattr(runcomfy_async, name)
        for name in runcomfy_async.__all__
        if inspect.isclass(getattr(runcomfy_async, name))
        and issubclass(getattr(runcomfy_async, name), BaseException)
    ]
    assert exported
    assert [c.__name__ for c in exported if c.__module__ != _errors.__name__] == []
    tree = _errors.__doc__ or ""
    assert [c.__name__ for c in exported if c.__name__ not in tree] == []


def test_no_exception_class_defined_outside_errors() -> None:
    """No other module of the core package defines a RunComfyError subclass of its own."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_errors.py" or "testing" in path.parts or "cli" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and b.id.endswith("Error") for b in node.bases
            ):
                offenders.append(f"{_module_name(path)}.{node.name}")
    assert offenders == []
