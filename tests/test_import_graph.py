"""The import graph of the project's packages: no cycles, and layers point one way.

Every import statement counts, function-local and ``TYPE_CHECKING`` ones too, so a cycle
cannot hide inside a function. Layers: ``cli`` composes everything and nothing imports it;
``bench`` and ``draft_models`` may use ``gateway``/``engine`` but not the reverse; ``engine``
never imports ``gateway``; inside ``gateway`` the serving pipeline and the batch worker never
reach into the HTTP layer.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "engine", "draft_models", "bench", "cli")
# (importer prefix, imported prefix): edges that must not exist.
FORBIDDEN = (
    ("engine", "gateway"), ("engine", "bench"), ("engine", "draft_models"),
    ("gateway", "bench"), ("gateway", "draft_models"), ("gateway", "cli"),
    ("engine", "cli"), ("bench", "cli"), ("draft_models", "cli"), ("draft_models", "gateway"),
    ("draft_models", "bench"), ("gateway.serving", "gateway.http"),
    ("gateway.batches", "gateway.http"), ("gateway.openai", "gateway.http"),
)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imported(path: Path, module: str, is_package: bool) -> Iterator[str]:
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def graph() -> dict[str, set[str]]:
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for name in _imported(path, module, path.name == "__init__.py"):
            target = resolve(name)
            if target and target != module and not target.startswith(module + "."):
                edges[module].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_import_graph_when_built_then_it_sees_the_packages_and_their_edges() -> None:
    edges = graph()
    assert "gateway.serving.pipeline" in edges and "cli" in edges
    assert "gateway.serving.run" in edges["gateway.serving.pipeline"]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_import_graph_when_walked_then_no_module_cycle() -> None:
    assert cycles(graph()) == []


def test_import_graph_when_walked_then_layers_point_one_way() -> None:
    bad = sorted(f"{m} -> {t}" for m, targets in graph().items() for t in targets
                 for a, b in FORBIDDEN if (m == a or m.startswith(a + "."))
                 and (t == b or t.startswith(b + ".")))
    assert bad == []
