"""bench/first_image.py (issue 18, item 4) runs end to end as an operator runs it: two fresh installs
started with ``python -m hoffdesk_images.run``, Chromium clicking Generate on each, and an exit
status of 1 when it misses its target, so a script or CI job cannot read a miss as a success.

It runs in its smoke size (one 128x128 candidate) to stay near a minute; its own servers, data
folders and ports are throw-away, never this test's database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECONDS = r"(\d+\.\d+) s"


def run_bench(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``bench/<script>`` with this interpreter; the benchmark makes its own throw-away data."""
    env = {**os.environ}
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, f"bench/{script}", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
@pytest.mark.browser
def test_the_first_image_benchmark_times_both_fresh_starts_and_exits_1_on_a_miss() -> None:
    done = run_bench("first_image.py", "--smoke", "--target", "0.01")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert done.stdout.startswith("machine: "), output
    for name, flag in (("no preload", "false"), ("preload", "true")):
        line = re.search(
            rf"^{name} +\(HOFFDESK_PRELOAD={flag} *\): click to first preview {SECONDS}, "
            rf"click to first thumbnail {SECONDS};",
            done.stdout,
            re.MULTILINE,
        )
        assert line is not None, output
        preview, thumbnail = float(line[1]), float(line[2])
        assert 0 < preview < thumbnail, output  # a preview shows while it runs, before the candidate
    assert re.search(r"ratio preload / no preload, click to first thumbnail: \d+\.\d+ \(target below 0\.01\)", output)
    assert "MISS: preload is not faster to the first thumbnail" in done.stdout, output
