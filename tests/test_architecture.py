"""The package's shape: subpackages by subsystem, dependencies pointing one way (down), no
import cycle, no module over 400 lines. Checked on the source, so a new module is checked too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline"
# A subpackage may import from its own floor or below; `cli`, `demo`, `bench` sit on top.
FLOORS = {
    "contract": 0,
    "intake": 1,
    "world": 2,
    "scoring": 3,  # a model with the knowledge base's posterior feature scores through pipeline.world.belief
    "tracking": 4,
    "learning": 5,
    "reporting": 5,
    "engines": 6,
}
MAX_LINES = 400


def _module_names() -> set[str]:
    return set(_modules())


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path) -> set[str]:
    """The project modules a file imports (`from pkg import module` counts as that module)."""
    known, found = _module_names(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
            submodules = {f"{node.module}.{a.name}" for a in node.names} & known
            found |= submodules or {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pipeline")}
    return found


def test_every_subsystem_is_a_subpackage_and_nothing_else_is_loose():
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "bench.py", "cli.py", "demo.py"]
    assert sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()) == sorted(FLOORS)


def test_dependencies_point_down():
    upward = []
    for name, path in _modules().items():
        parts = name.split(".")
        if len(parts) < 2 or parts[1] not in FLOORS:
            continue
        for target in _imports(path):
            if target == "pipeline":
                continue  # the root package holds constants only (the disclaimer)
            sub = target.split(".")[1] if target.count(".") else None
            if sub not in FLOORS:
                upward.append((name, target))  # a subsystem importing the top (cli, demo, bench)
            elif sub != parts[1] and FLOORS[sub] >= FLOORS[parts[1]]:
                upward.append((name, target))  # a floor's neighbour or a floor above
    assert not upward, upward


def test_no_import_cycle():
    modules = _modules()
    graph = {name: {t for t in _imports(path) if t in modules and t != name} for name, path in modules.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError(f"import cycle: {' -> '.join([*trail, node, nxt])}")
            if not state.get(nxt):
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in graph:
        if not state.get(node):
            visit(node, [])


def test_no_module_over_400_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long
