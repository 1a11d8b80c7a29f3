"""No import cycle between the modules of wsgistack/supervisor/.

Every import statement counts, read from the source (ast), not from what a run happens to import: those at the
top, inside functions and under TYPE_CHECKING alike. A cycle held apart by a late import is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import wsgistack.supervisor

PACKAGE = "wsgistack.supervisor"
FOLDER = Path(wsgistack.supervisor.__file__).parent


def _modules() -> dict[str, Path]:
    return {path.stem: path for path in sorted(FOLDER.glob("*.py"))}


def _imported(tree: ast.AST, known: set[str]) -> set[str]:
    """The modules of the package that `tree` imports, by their short names."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = PACKAGE if node.level else (node.module or "")
            if node.level and node.module:
                base = f"{PACKAGE}.{node.module}"
            # `from wsgistack.supervisor import options` names a module; `from ...options import x` its module
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            if target == PACKAGE:
                found.add("__init__")
            elif target.startswith(PACKAGE + "."):
                name = target[len(PACKAGE) + 1:].split(".")[0]
                if name in known:
                    found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (itself left out)."""
    modules = _modules()
    return {name: _imported(ast.parse(path.read_text(), str(path)), set(modules)) - {name}
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path that ends where it starts, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node):], node]
        if node in done:
            return None
        for other in sorted(graph[node]):
            cycle = visit(other, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node, [])
        if cycle:
            return cycle
    return None


def test_the_graph_sees_late_and_type_checking_imports():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from wsgistack.supervisor.ctl import x\n"
                     "def f():\n    from wsgistack.supervisor import options\n    import wsgistack.supervisor.load\n")
    assert _imported(tree, {"ctl", "options", "load", "daemon"}) == {"ctl", "options", "load", "__init__"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_supervisor_package():
    graph = import_graph()
    assert "control" in graph and "runtime" in graph["control"]  # the graph is the package's, not empty
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])
