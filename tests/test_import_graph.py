"""One direction between the apps: ``api`` -> ``gallery`` -> ``generation`` -> ``generation.engine``.

Read from the source (an AST walk, lazy imports inside functions included), not from what happens
to be imported at run time: ``generation`` never imports ``gallery`` or ``api``, ``gallery`` never
imports ``api``, and nothing on the web side imports the engine (the only code that imports torch).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imports_of(package: str) -> dict[str, set[str]]:
    """Module file -> the absolute module names it imports, for every .py under ``package``
    (migrations skipped: they name other apps' models by string, as Django writes them)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(ROOT))] = names
    return found


def offenders(package: str, forbidden: tuple[str, ...], *, skip: tuple[str, ...] = ()) -> dict[str, list[str]]:
    bad: dict[str, list[str]] = {}
    for module, names in imports_of(package).items():
        if module.startswith(skip):
            continue
        hits = sorted(n for n in names if n in forbidden or n.startswith(tuple(f"{f}." for f in forbidden)))
        if hits:
            bad[module] = hits
    return bad


def test_generation_never_imports_the_editorial_side_or_the_api() -> None:
    assert offenders("generation", ("gallery", "api")) == {}


def test_gallery_never_imports_the_api() -> None:
    assert offenders("gallery", ("api",)) == {}


@pytest.mark.parametrize("package", ["gallery", "api", "hoffdesk_images"])
def test_the_web_side_never_imports_the_engine(package: str) -> None:
    assert offenders(package, ("generation.engine", "torch", "diffusers")) == {}


def test_inside_generation_only_the_worker_side_imports_the_engine() -> None:
    worker_side = ("generation/engine/", "generation/tasks.py", "generation/management/commands/fetch_models.py")
    engine_users = {
        m for m, names in imports_of("generation").items() if any(n.startswith("generation.engine") for n in names)
    }
    assert {m for m in engine_users if not m.startswith(worker_side)} == set(), engine_users
