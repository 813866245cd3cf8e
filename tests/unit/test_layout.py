"""The layout's promises (README, "Layout"): modules of one concept stay short, and no module
imports its way back into itself. The direction of imports between layers is import-linter's
job (``lint-imports`` in ``make test``, contracts in pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("streaming", "plans", "devices", "simulators")
MAX_LINES = 450  # ~400 is the guide (STYLE.md R1); past this a module holds more than one concept


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_longer_than_the_guide(package):
    lengths = {path.relative_to(ROOT): len(path.read_text(encoding="utf-8").splitlines())
               for path in (ROOT / package).rglob("*.py")}  # fmt: skip
    assert lengths, f"no modules found under {package}/"
    too_long = {str(path): n for path, n in lengths.items() if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components of ``graph`` (module -> modules it imports)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            components.append(component)

    for node in graph:
        if node not in index:
            visit(node)
    return components


def test_no_import_cycle_between_modules():
    """Every import counts, those under ``TYPE_CHECKING`` and inside functions too; a package's
    ``__init__`` re-exporting its own modules is not a cycle of concepts, so imports of a
    package by its own descendants are left out."""
    graph = grimp.build_graph(*PACKAGES)
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        imported = {
            target for target in graph.find_modules_directly_imported_by(module)
            if target.split(".")[0] in PACKAGES and not module.startswith(target + ".")
        }  # fmt: skip
        edges[module] = imported
    cycles = [sorted(component) for component in _strongly_connected(edges) if len(component) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_the_cycle_check_sees_a_cycle():
    """The check above can fail: a two-module loop and a three-module loop are found."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(sorted(c) for c in _strongly_connected(graph) if len(c) > 1) == [["a", "b"], ["c", "d", "e"]]
