"""Architecture: imports go one way, down the layers of docs/architecture.md, and no module
imports itself back through a cycle. Imports are read from the source (module level and inside
functions; ``if TYPE_CHECKING:`` blocks are annotations only and are skipped)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "hopnet"

#: bottom to top; a unit may import its own layer's other units only where listed in SAME_LAYER
LAYERS: list[tuple[str, ...]] = [
    ("infra",),                                                   # errors, configs, provenance, files
    ("structures", "metrics", "physics", "nn", "potentials"),     # crystals, numbers, layers, uMLIPs
    ("paths", "datasets", "graphs", "neb_cache", "plots", "database"),  # hops as bands, data, graphs, structure sources
    ("cells", "descriptors", "insertion", "importing"),           # canonical cells, descriptors
    ("hops", "percolation", "neb"),                               # hop networks, universal-potential NEB
    ("models",),                                                  # every model family, end to end
    ("training", "inference", "evaluate"),                        # fitting; predicting; scoring
    ("screening", "crossval"),                                    # whole structures; CV protocol
    ("reproduce", "screen_runner", "screen_table"),               # the published comparison; screening many
    ("cli",),                                                     # the command line
    ("__main__",),
]
RANK = {unit: k for k, units in enumerate(LAYERS) for unit in units}


def _units() -> list[str]:
    return sorted({p.relative_to(SRC).with_suffix("").parts[0] for p in SRC.rglob("*.py")} - {"__init__"})


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """The hopnet modules ``path`` imports (``from hopnet import x`` resolved to ``hopnet.x`` when
    x is a module), outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "hopnet"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "hopnet":
            subs = {f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}")}
            out |= subs or {node.module}
            if len(subs) < len(node.names):
                out.add(node.module)
    return out


def _graph() -> dict[str, set[str]]:
    mods = {_module_name(p): p for p in SRC.rglob("*.py")}
    return {m: {d for d in imports_of(p) if d in mods and d != m} for m, p in mods.items()}


def test_every_unit_has_a_layer():
    assert not [u for u in _units() if u not in RANK], "add new modules to LAYERS (and docs/architecture.md)"


@pytest.mark.parametrize("unit", _units())
def test_imports_go_down_the_layers(unit):
    bad = []
    for path in [SRC / f"{unit}.py"] if (SRC / f"{unit}.py").exists() else sorted((SRC / unit).rglob("*.py")):
        for dep in imports_of(path):
            parts = dep.split(".")
            if len(parts) == 1:  # the package root: version and lazy public API only
                continue
            if parts[1] != unit and RANK.get(parts[1], -1) >= RANK[unit]:
                bad.append(f"{_module_name(path)} imports {dep}")
    assert not bad, "\n".join(bad)


def test_the_package_root_imports_only_infrastructure():
    assert {d.split(".")[1] for d in imports_of(SRC / "__init__.py")} <= {"infra"}


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        if state.get(m) == 1:
            raise AssertionError(f"import cycle: {' -> '.join(stack[stack.index(m):] + [m])}")
        if state.get(m) == 2:
            return
        state[m] = 1
        for n in sorted(graph[m]):
            visit(n, stack + [m])
        state[m] = 2

    for m in sorted(graph):
        visit(m, [])


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path):
    """The checks can fail: a fake package with a -> b -> a and a lower layer importing cli."""
    pkg = tmp_path / "hopnet"
    (pkg / "infra").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "infra" / "__init__.py").write_text("")
    (pkg / "infra" / "a.py").write_text("from hopnet.infra import b\n")
    (pkg / "infra" / "b.py").write_text("def f():\n    import hopnet.infra.a\n    from hopnet.cli import main\n")
    (pkg / "cli.py").write_text("")
    globals()["SRC"], old = pkg, SRC
    try:
        with pytest.raises(AssertionError, match="import cycle"):
            test_no_import_cycle()
        with pytest.raises(AssertionError, match="imports hopnet.cli"):
            test_imports_go_down_the_layers("infra")
    finally:
        globals()["SRC"] = old
