"""The lock files in requirements/ cover pyproject.toml: a dependency added or raised there
without `make lock` fails here instead of on a stranger's machine."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# setup.sh installs torch itself (HOFFDESK_TORCH_SPEC), so the locks leave it and its CUDA
# packages out.
TORCH_STACK = re.compile(r"^(torch|triton|nvidia-.+|cuda-.+)$")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def locked_versions(lock_name: str) -> dict[str, set[Version]]:
    """Name (normalized) to the versions pinned in requirements/<lock_name>.txt; one name may
    have two pins under different Python-version markers."""
    pins: dict[str, set[Version]] = {}
    for line in (ROOT / "requirements" / f"{lock_name}.txt").read_text().splitlines():
        if match := PIN.match(line):
            pins.setdefault(canonicalize_name(match[1]), set()).add(Version(match[2]))
    return pins


def declared(extra: str) -> list[Requirement]:
    requirements = PROJECT["dependencies"] + PROJECT["optional-dependencies"].get(extra, [])
    return [Requirement(text) for text in requirements]


EXTRAS = ["runtime", *PROJECT["optional-dependencies"]]


@pytest.mark.parametrize("extra", EXTRAS)
def test_every_declared_dependency_is_pinned_in_its_lock_within_the_declared_range(extra: str) -> None:
    pins = locked_versions(extra)
    problems = []
    for requirement in declared(extra):
        name = canonicalize_name(requirement.name)
        if TORCH_STACK.match(name):
            continue
        if name not in pins:
            problems.append(f"{requirement} is not in requirements/{extra}.txt")
        elif not any(requirement.specifier.contains(version, prereleases=True) for version in pins[name]):
            problems.append(f"{requirement} but requirements/{extra}.txt pins {sorted(map(str, pins[name]))}")
    assert not problems, "run `make lock` and commit requirements/:\n" + "\n".join(problems)


def test_every_extra_has_a_lock_and_all_txt_holds_every_extra() -> None:
    all_pins = locked_versions("all")
    for extra in EXTRAS:
        pins = locked_versions(extra)
        assert pins.items() <= all_pins.items(), f"requirements/{extra}.txt strays from all.txt: run `make lock`"


@pytest.mark.parametrize("lock_name", ["all", *EXTRAS])
def test_locks_leave_torch_and_its_cuda_packages_to_setup(lock_name: str) -> None:
    assert not [name for name in locked_versions(lock_name) if TORCH_STACK.match(name)]
    assert "--hash=sha256:" in (ROOT / "requirements" / f"{lock_name}.txt").read_text()
