"""The layer rule of docs/architecture.md, checked on the source (every import statement, also
the ones inside functions): engine imports none of the adapters; api, streams and web are
adapters over engine (web may also use api's helpers); cli wires them all. Inside engine, no two
packages import each other, directly or round a longer loop."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "api", "streams", "web", "cli")
# What each top-level package may import from the others (itself is always allowed).
ALLOWED: dict[str, frozenset[str]] = {
    "engine": frozenset(),
    "api": frozenset({"engine"}),
    "streams": frozenset({"engine"}),
    "web": frozenset({"engine", "api"}),
    "cli": frozenset({"engine", "api", "streams", "web"}),
}


def _module(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved."""
    module = _module(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield node.lineno, ".".join([*base, *([node.module] if node.module else [])])
            elif node.module:
                yield node.lineno, node.module


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_every_layer_imports_only_what_it_may() -> None:
    broken = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for package in PACKAGES
        for path in _sources(package)
        for line, name in _imports(path)
        if (top := name.split(".")[0]) in PACKAGES and top != package and top not in ALLOWED[package]
    ]
    assert broken == []


def _engine_package_graph() -> dict[str, set[str]]:
    """engine's packages (and top-level modules) → the other ones they import."""
    graph: dict[str, set[str]] = {}
    for path in _sources("engine"):
        parts = _module(path).split(".")
        if len(parts) < 2:
            continue  # engine/__init__.py
        graph.setdefault(parts[1], set())
        for _, name in _imports(path):
            target = name.split(".")
            if target[0] == "engine" and len(target) > 1 and target[1] != parts[1]:
                graph[parts[1]].add(target[1])
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_engine_packages_form_no_cycle() -> None:
    assert _cycles(_engine_package_graph()) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"links": {"rules"}, "rules": {"links"}}, [["links", "rules"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ],
)
def test_the_cycle_check_finds_cycles(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert _cycles(graph) == expected


def test_the_import_scan_sees_nested_and_relative_imports(tmp_path: Path) -> None:
    module = tmp_path / "engine" / "links" / "sample.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "from . import cache\n"
        "from ..rules import models\n"
        "def later():\n"
        "    import api.http\n"
        "    from streams.web import serve\n"
    )
    names = {name for _, name in _imports(module, root=tmp_path)}
    assert names == {"engine.links", "engine.rules", "api.http", "streams.web"}
