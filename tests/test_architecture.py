"""The package's shape: stages import only downwards, and no module imports itself back.

Every import counts, including those inside functions and under TYPE_CHECKING: a lazy
import hides a cycle from the interpreter, not from a reader.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Folder in the repository -> the package name it installs as (see pyproject.toml).
SOURCES = {
    "sweeper": "sweeper",
    "models": "sweeper.models",
    "datasets": "sweeper.datasets",
    "hydra_plugins": "hydra_plugins",
}

# Stages from the bottom up. A module may import its own stage's package and any lower stage;
# packages that share a stage stay independent of each other.
STAGES: tuple[tuple[str, ...], ...] = (
    ("sweeper.errors", "sweeper.redact", "sweeper._threads", "sweeper.pareto"),
    ("sweeper.energy", "sweeper.store", "sweeper.models", "sweeper.datasets"),
    ("sweeper.config",),
    ("sweeper.training", "sweeper.predict"),
    ("sweeper.run",),
    ("sweeper.search", "sweeper.report"),
    ("sweeper.app",),
    ("sweeper.__main__", "sweeper.front", "hydra_plugins"),
)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    parts[0] = SOURCES[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imported(path: Path, name: str, known: set[str]) -> Iterator[str]:
    """The package's own modules that `path` imports, resolved to known module names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            # The longest known module the target names (a name imported from a module
            # resolves to the module itself).
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: set(imported(path, name, known)) for name, path in found.items()}


def stage_of(module: str) -> tuple[int, str]:
    for rank, packages in enumerate(STAGES):
        for package in packages:
            if module == package or module.startswith(package + "."):
                return rank, package
    raise AssertionError(f"{module} belongs to no stage: add it to STAGES")


def test_every_module_belongs_to_a_stage() -> None:
    for module in graph():
        if module != "sweeper":
            stage_of(module)


def test_imports_only_go_down() -> None:
    upward = []
    for module, targets in graph().items():
        if module == "sweeper":
            continue
        rank, package = stage_of(module)
        for target in targets:
            if target == "sweeper":
                continue
            target_rank, target_package = stage_of(target)
            if target_package != package and target_rank >= rank:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that do not go down a stage:\n" + "\n".join(sorted(upward))


def test_no_import_cycles() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1 visiting, 2 done
    cycles: list[str] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*trail[trail.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("module", ["sweeper.config.spec", "sweeper.store", "sweeper.energy"])
def test_checker_sees_real_imports(module: str) -> None:
    """Guard against a walker that finds nothing (and so passes everything)."""
    assert graph()[module], f"no imports found for {module}"


def test_stage_rule_catches_an_upward_import(tmp_path: Path) -> None:
    source = tmp_path / "bad.py"
    source.write_text("from sweeper.run.job import run_job\n")
    known = set(modules())
    targets = set(imported(source, "sweeper.store.bad", known))
    assert targets == {"sweeper.run.job"}
    assert stage_of("sweeper.run.job")[0] > stage_of("sweeper.store.bad")[0]
