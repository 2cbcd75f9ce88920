"""Worker processes starting together on a fresh models folder build each tiny model once.

Each process builds into a temporary folder and renames it into place; without taking turns,
two builders would both build, and the second would remove the first one's finished folder (under
a process that may be loading it) to put its own there.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

BUILDER = """
import os, sys, time
from pathlib import Path
from generation.engine.tiny import ensure_tiny, is_built
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
folder = ensure_tiny("tiny-sd", Path(sys.argv[1]))
assert is_built(folder)
print(os.stat(folder / "model_index.json").st_ino)
"""


@pytest.mark.slow
def test_four_processes_starting_together_build_the_tiny_model_once(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "tiny-sd"
    start = time.time() + 15  # after every process has imported torch and diffusers
    builders = [
        subprocess.Popen(
            [sys.executable, "-c", BUILDER, str(folder), str(start)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [builder.communicate(timeout=180) for builder in builders]
    for builder, (_out, err) in zip(builders, results, strict=True):
        assert builder.returncode == 0, err[-3000:]
    assert time.time() > start, "the processes did not start building together"

    inodes = {out.strip() for out, _ in results}
    final = str((folder / "model_index.json").stat().st_ino)
    assert inodes == {final}, "a builder's finished folder was replaced by another's build"
    leftovers = [p.name for p in folder.parent.iterdir() if p.name.startswith(".tiny-sd-")]
    assert leftovers == [], f"temporary build folders left behind: {leftovers}"
