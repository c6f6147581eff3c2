"""The import graph of the three packages: no cycles, and imports point one way.

``orchestrator -> workers <- tasks``; inside ``workers`` and ``orchestrator`` sub-packages form
layers and a module imports only from its own layer or below. Every import counts: at module
level, inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("workers", "tasks", "orchestrator")

# Bottom first. A module may import its own layer and the layers before it.
LAYERS = {
    "workers": [
        "core",
        "pools",
        "skills",
        "ledger",
        "cache",
        "telemetry",
        "providers",
        "runtime",
        "maintenance",
        "celery_app",
        "",  # workers/__init__.py: the lazily built app
    ],
    "orchestrator": [
        "harness",
        "tuner",
        "core",
        "batch",
        "facade",
        "doctor",
        "api",
        "bench",
        "cli",
    ],
}
FORBIDDEN = {
    "workers": {"tasks", "orchestrator"},
    "tasks": {"orchestrator"},
    "orchestrator": {"tasks"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def dynamic_import(node: ast.AST) -> str | None:
    """The module a call ``importlib.import_module("a.b")`` or ``__import__("a.b")`` names,
    when it is a literal: an import by name is still an import."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    function = node.func
    called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
    argument = node.args[0]
    if called in {"import_module", "__import__"} and isinstance(argument, ast.Constant):
        return argument.value if isinstance(argument.value, str) else None
    return None


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (resolved to modules, not names)."""
    files = {module_name(path): path for path in source_files()}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif dynamic := dynamic_import(node):
                targets = [dynamic]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")
                    anchor = anchor if is_package else anchor[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    targets.append(candidate if candidate in files else base)
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(module: str) -> tuple[str, int] | None:
    package, _, rest = module.partition(".")
    layers = LAYERS.get(package)
    if layers is None:
        return None
    sub = rest.partition(".")[0] if "." in rest else (rest if rest in layers else "")
    if sub not in layers:
        return None
    return package, layers.index(sub)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_sees_the_packages(graph: dict[str, set[str]]) -> None:
    assert "workers.core.errors" in graph and "orchestrator.cli" in graph
    assert "workers.core.errors" in graph["workers.core.paths"]
    assert "workers.core.paths" in graph["tasks.files"]


def test_no_import_cycle_between_modules(graph: dict[str, set[str]]) -> None:
    assert cycles(graph) == []


def test_the_cycle_finder_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_packages_import_one_way(graph: dict[str, set[str]]) -> None:
    wrong = [
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if target.partition(".")[0] in FORBIDDEN[module.partition(".")[0]]
    ]
    assert wrong == []


def test_sub_packages_import_only_their_layer_and_below(graph: dict[str, set[str]]) -> None:
    unknown = sorted(
        module
        for module in graph
        if module.partition(".")[0] in LAYERS and "." in module and layer_of(module) is None
    )
    assert unknown == [], "add each new sub-package to LAYERS"
    upward = []
    for module, targets in graph.items():
        source = layer_of(module)
        for target in targets:
            destination = layer_of(target)
            if source and destination and source[0] == destination[0]:
                if destination[1] > source[1]:
                    upward.append(f"{module} -> {target}")
    assert upward == []
