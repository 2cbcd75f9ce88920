"""The benchmarks in bench/ run as an operator runs them (subprocesses, tiny sizes): the GPU
benchmark's code path end to end on a CPU, and every benchmark's exit status 1 when it misses its
target (errors are 2), so a script or CI job cannot read a FAIL as a success."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def run_bench(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``bench/<script>`` with this interpreter; each benchmark makes its own throw-away data."""
    env = {**os.environ}
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, f"bench/{script}", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )


def test_the_gpu_benchmark_runs_end_to_end_on_a_cpu_with_smoke() -> None:
    done = run_bench("gpu_real_size.py", "--smoke", "--repeats", "1", "--threads", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    for family in ("sdxl", "flux"):
        # The engine side went through the worker's progress callback into a real run row ...
        assert f"{family}: progress written to run" in done.stdout, done.stdout
        # ... and that callback stopped the pipeline once the run was cancelled.
        assert f"{family}: a cancel stopped the engine at step 1 of" in done.stdout, done.stdout
        assert f"{family}: 2 steps, bare diffusers" in done.stdout, done.stdout


def test_the_gpu_benchmark_simulating_a_card_places_by_the_memory_plan_on_a_cpu_with_smoke() -> None:
    """``--vram-gib 12`` (issue 18): on a CPU the plan is "CPU" and the engine still makes the image."""
    smoke = ("--smoke", "--repeats", "1", "--threads", "1", "--only", "flux")
    done = run_bench("gpu_real_size.py", *smoke, "--vram-gib", "12")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "flux: plan 'CPU'" in done.stdout and "s/image, peak reserved n/a (CPU)" in done.stdout, done.stdout


def test_the_switching_benchmark_loads_twice_model_aware_and_exits_1_on_a_miss() -> None:
    """bench/switching.py (issue 18): 4 runs alternating two tiny models, FIFO loads each time,
    model-aware twice, FIFO with the RAM cache twice and copies the rest; an unreachable --target
    makes it exit 1 saying why."""
    done = run_bench("switching.py", "--runs", "4", "--load-delay", "0.3", "--target", "0.01")
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"FIFO +total .*,  4 loads,  0 copies", done.stdout), done.stdout
    assert re.search(r"model-aware +total .*,  2 loads,  0 copies", done.stdout), done.stdout
    # With the RAM cache, FIFO reads each model from disk once; the other two switches are copies.
    assert re.search(r"FIFO \+ RAM +total .*,  2 loads,  2 copies", done.stdout), done.stdout
    assert "MISS: model-aware is not faster" in done.stdout, done.stdout


def test_the_full_size_architectures_build_from_the_vendored_configs() -> None:
    """The real-size path cannot run without a GPU, but its models can be built on torch's ``meta``
    device (no memory, no weights): the configs load, and the sizes are the published ones."""
    import torch

    spec = importlib.util.spec_from_file_location("gpu_real_size", ROOT / "bench" / "gpu_real_size.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    sdxl = bench.build_sdxl("meta", torch.float16)
    assert bench.params(sdxl.unet) == "2.57 B"
    flux = bench.build_flux("meta", torch.bfloat16)
    assert (bench.params(flux.transformer), bench.params(flux.text_encoder_2)) == ("11.90 B", "4.76 B")


def test_the_gpu_benchmark_exits_1_when_the_engine_misses_its_target() -> None:
    smoke = ("--smoke", "--repeats", "1", "--threads", "1", "--only", "sdxl")
    done = run_bench("gpu_real_size.py", *smoke, "--target", "0.001")
    assert "target: engine/bare <= 0.001" in done.stdout and "FAIL" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 1, done.stdout + done.stderr


def test_the_publish_benchmark_exits_1_when_it_misses_its_target() -> None:
    done = run_bench("publish.py", "--candidates", "2", "--rounds", "1", "--target", "0.001")
    assert "target <= 0.001  FAIL" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 1, done.stdout + done.stderr


def test_the_dashboard_benchmark_exits_1_when_it_misses_a_target() -> None:
    tiny = ("--articles", "2", "--candidates", "50", "--requests", "2")
    done = run_bench("dashboard.py", *tiny, "--p95-target-ms", "0.001")
    assert "target < 0.001 ms  FAIL" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 1, done.stdout + done.stderr


def test_the_comfyui_overhead_benchmark_runs_on_the_stand_in_and_exits_1_on_a_miss() -> None:
    """End to end against the tests' stand-in ComfyUI (a local server in ComfyUI's shapes standing
    in for a ComfyUI box on another machine): both sides make their images, the ratio is printed
    with the server's version, and a target it cannot meet exits 1."""
    tiny = ("--stand-in", "--images", "2", "--rounds", "1", "--steps", "3", "--size", "64")
    done = run_bench("comfyui_overhead.py", *tiny, "--target", "0.001")
    assert "ComfyUI 0.3.99-stand-in at" in done.stdout, done.stdout + done.stderr
    assert "ratio HoffDesk/direct" in done.stdout and "target <= 0.001  FAIL" in done.stdout, done.stdout
    assert done.returncode == 1, done.stdout + done.stderr


def test_the_costs_benchmark_counts_a_fixed_handful_of_queries_and_exits_1_on_a_miss() -> None:
    done = run_bench("costs.py", "--candidates", "40", "--repeats", "1", "--target-ms", "0.001")
    assert "cost_report(weeks=12)" in done.stdout and ", 4 queries" in done.stdout, done.stdout + done.stderr
    assert "target < 0.001 ms  FAIL" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 1, done.stdout + done.stderr
