"""The layer rule of docs/design.md, checked on the source: no import cycle between any two modules of
wsgistack (imports inside functions and under TYPE_CHECKING count: a cycle held apart by a late import is
still a cycle), and `http/` imports nothing outside `http/`. One checker for the whole package (the proxy's
and the supervisor's own checks were folded into it).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "wsgistack"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports, wherever the import statement is."""
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:  # `from pkg import module` imports that module
                    found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in files else source)
        graph[name] = {target for target in found if target in files and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_anywhere_in_the_package():
    assert cycles(import_graph()) == []


# docs/design.md's layers, lowest first; the package's own __init__ (the version) is below them all
LAYERS = ["process", "event_loop", "config", "http", "observe", "gateway", "wsgi", "server", "proxy", "supervisor", "stack",
          "export", "cli",
          "__main__"]


def layer(module: str) -> int:
    parts = module.split(".")
    return -1 if len(parts) == 1 else LAYERS.index(parts[1])


def test_a_layer_imports_only_itself_and_the_layers_before_it():
    upward = sorted((module, target) for module, targets in import_graph().items() for target in targets
                    if layer(target) > layer(module))
    assert upward == []


def test_http_imports_nothing_outside_http():
    outside = {(module, target) for module, targets in import_graph().items() if module.startswith("wsgistack.http")
               for target in targets if not target.startswith("wsgistack.http")}
    assert outside == set()


# a status line ("HTTP/1.1 ", "HTTP/1.1 200") or the end of a request line ("GET / HTTP/1.1", "... HTTP/1.1\r\n")
_START_LINE = re.compile(r"^HTTP/1\.[01] | HTTP/1\.[01](\r\n|$)")


def start_lines(path: Path) -> list[str]:
    """The string constants of a module (f-string pieces too) that write an HTTP start line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _START_LINE.search(node.value)]


def test_one_module_writes_http_heads():
    # every head goes through http/heads.py (write_head); nothing else spells a status or request line
    writers = {module_name(path) for path in PACKAGE.rglob("*.py") if start_lines(path)}
    assert writers == {"wsgistack.http.heads"}


def test_the_graph_sees_late_and_type_checking_imports():
    graph = import_graph()
    assert "wsgistack.supervisor.load" in graph["wsgistack.supervisor.ctl"]  # inside a function
    assert "wsgistack.proxy.routing" in graph["wsgistack.proxy.connection"]  # under TYPE_CHECKING
    assert "wsgistack.proxy.static_reply" in graph["wsgistack.proxy.server"]  # `from wsgistack.proxy import x`


def test_the_checker_sees_a_late_import_cycle():
    # the checker itself: a cycle through an import inside a function is found
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
