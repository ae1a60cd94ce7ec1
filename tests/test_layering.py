"""Import direction of the crystal / hop / NEB layer: these modules sit below screening, the
models and the command line, and must not import them (at module level or inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "hopnet"
LOWER = ["cells", "hops", "percolation", "potentials", "neb_cache", "neb"]
HIGHER = ("hopnet.cli", "hopnet.screen", "hopnet.plots", "hopnet.predict", "hopnet.training", "hopnet.models",
          "hopnet.evaluate", "hopnet.reproduce")


def imported(module: str) -> set[str]:
    tree = ast.parse((SRC / f"{module}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return {n for n in names if n.startswith("hopnet")}


@pytest.mark.parametrize("module", LOWER)
def test_lower_layer_does_not_import_upward(module):
    bad = sorted(n for n in imported(module) if n.startswith(HIGHER))
    assert not bad, f"hopnet.{module} imports {bad}"


def test_no_cycle_among_the_lower_modules():
    graph = {m: {n.split(".")[1] for n in imported(m) if n.count(".") == 1 and n.split(".")[1] in LOWER} - {m}
             for m in LOWER}
    seen: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        if seen.get(m) == 1:
            raise AssertionError(f"import cycle: {' -> '.join(stack + [m])}")
        if seen.get(m) == 2:
            return
        seen[m] = 1
        for n in graph[m]:
            visit(n, stack + [m])
        seen[m] = 2

    for m in LOWER:
        visit(m, [])
