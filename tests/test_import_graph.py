"""The package's modules import each other in one direction only: no cycle, counting type-only imports too.

The layers are written down in ``docs/decisions.md``; this test reads every ``import`` statement of
``asgi_session`` (``if TYPE_CHECKING:`` blocks and function-local imports included) and fails on any cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import asgi_session

PACKAGE_DIR = Path(asgi_session.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["asgi_session", *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports (``from . import x`` counts as importing ``x`` when it is a module)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports."""
    paths = sorted(PACKAGE_DIR.rglob("*.py"))
    modules = {_module_name(path) for path in paths}
    # A package's __init__ re-exports its modules; importing a submodule runs it, which is not a dependency of
    # the submodule on its siblings. Edges into a package __init__ are therefore left out.
    packages = {_module_name(path) for path in paths if path.name == "__init__.py"}
    return {_module_name(path): _imports(path, modules) - packages for path in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)) is not None:
            return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    assert find_cycle(import_graph()) is None


def test_the_manager_layers_import_downward() -> None:
    graph = import_graph()
    assert "asgi_session.manager" not in graph["asgi_session.session"]
    assert "asgi_session._admin" not in graph["asgi_session.session"]
    assert "asgi_session.session" in graph["asgi_session._admin"]
    assert "asgi_session._admin" in graph["asgi_session._refresh"]
    assert "asgi_session._refresh" in graph["asgi_session._claim_admin"]
    assert "asgi_session._claim_admin" in graph["asgi_session.manager"]
    # Claims, hooks and error handlers sit below the session and the manager layers, and import none of them.
    for leaf in ("asgi_session.claims", "asgi_session.hooks", "asgi_session._error_handlers"):
        assert not graph[leaf] & {"asgi_session.session", "asgi_session.manager", "asgi_session._admin"}


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
