"""Fixtures for the engine tests that run the tiny models in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty models folder per test module; the tiny models are built into it on first use."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def fixed_threads() -> Iterator[None]:
    """Two torch threads for the test: byte-identical PNGs need the same thread count
    (docs/design.md). Not autouse, so the database tests here never import torch; an engine
    module asks for it with `pytestmark = pytest.mark.usefixtures("fixed_threads")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
