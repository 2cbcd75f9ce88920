"""Plain ownership inside ``generation``: no two modules import each other (a lazy import inside a
function hides a cycle, it does not remove it), and the worker's pending failures have one owner."""

from __future__ import annotations

import ast
from pathlib import Path

from generation import tasks

GENERATION = Path(__file__).resolve().parents[2] / "generation"


def imports_of(path: Path) -> set[str]:
    """Every ``generation.*`` module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("generation"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("generation")}
    return found


def test_no_two_generation_modules_import_each_other() -> None:
    graph = {f"generation.{p.stem}": imports_of(p) for p in GENERATION.glob("*.py")}
    pairs = sorted((a, b) for a, targets in graph.items() for b in targets if a < b and a in graph.get(b, set()))
    assert pairs == []


def test_the_unrecorded_failures_are_held_by_one_object_behind_its_own_methods() -> None:
    module_dicts = [
        name for name, value in vars(tasks).items() if isinstance(value, dict) and not name.startswith("__")
    ]
    assert module_dicts == []
    assert len(tasks.unrecorded_failures) == 0
