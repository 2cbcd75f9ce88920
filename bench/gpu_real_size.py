"""SDXL and FLUX.1 at full size on a GPU: the engine against bare diffusers.

Builds each architecture from the published configs vendored in generation/architectures/
(SDXL UNet 2.57 B, FLUX.1-dev transformer 11.9 B + T5-XXL 4.76 B parameters) with random
weights directly on the GPU: no download, and speed does not depend on the weights' values.
Then times a 1024x1024 image, as medians over --repeats interleaved calls after a warm-up:

- bare: the diffusers pipeline called directly, the way a user would (``pipe(prompt=...,
  generator=...)``, then the image saved as a PNG), with none of the engine's code;
- engine: ``generation.engine.generate.generate`` with the worker's own progress callback
  (``generation.tasks._progress_reporter``): CPU generators per seed, progress written to a real
  GenerationRun row in a throw-away SQLite database, its cancel flag read with those writes, PNG
  encoding with provenance, the same pipeline kept warm in the engine's cache.

After the timing it checks that the run row holds the last step, and that cancelling the row
stops the engine at the next progress write (step 1). The ratio engine/bare must stay within
--target (1.05 at full size): the exit status is 1 when it does not, or on any error.

The models are built in bf16/fp16 without nf4 quantization (an H100 has the memory; nf4 needs
bitsandbytes and changes kernel speed, not the engine's overhead).

Usage on a GPU box:  python bench/gpu_real_size.py

``--vram-gib 12`` simulates the owner's 12 GB card on a bigger one (issue 18):
``torch.cuda.set_per_process_memory_fraction`` caps this process at 12 GiB, each model is built on
the CPU and placed by the worker's own memory plan (``generation.engine.loader.choose_memory_plan``
with 1 GiB headroom, ``apply_memory_plan``), and the engine makes a 1216x640 hero (FLUX.1-dev 28
steps; SDXL Turbo 4 steps plus a 2x hires pass of 2 steps). It prints the plan, the peak reserved
GPU memory (``torch.cuda.max_memory_reserved``) and seconds per image. The weights are random and
unquantized (bf16/fp16), so the plan is made for unquantized weights (quantizing random weights to
nf4 would need bitsandbytes and a saved copy of 12 B parameters): the nf4 figures need the real
nf4 weights on the real card. With --smoke on a CPU the plan is "CPU" (nothing to apply).
CPU smoke run of the same code path (the engine refuses the real profiles on a CPU, so the tiny
SDXL and FLUX models of the same pipeline classes stand in, at 128 px and 2 steps; no target unless
--target is given, since those figures mean nothing):  python bench/gpu_real_size.py --smoke
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
ARCH = ROOT / "generation" / "architectures"

from _common import BenchError  # noqa: E402  (beside this script, found once the path is set)

# Engine time over bare diffusers time at full size (the same target as bench/engine_overhead.py).
TARGET = 1.05
PROMPT = "a lighthouse at dusk, photorealistic"
SEED = 1234


def config(folder: str, component: str) -> dict[str, Any]:
    return {
        k: v for k, v in json.loads((ARCH / folder / f"{component}.json").read_text()).items() if not k.startswith("_")
    }


def build_sdxl(device: str, dtype: Any) -> Any:
    import tempfile

    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from generation.engine.tiny import _clip_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tok1, tok2 = _clip_tokenizer(Path(tmp) / "1"), _clip_tokenizer(Path(tmp) / "2")
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(config("sdxl-base-1.0", "unet")).to(dtype)
        vae = AutoencoderKL.from_config(config("sdxl-base-1.0", "vae")).to(dtype)
        te1 = CLIPTextModel(CLIPTextConfig(**config("sdxl-base-1.0", "text_encoder"))).to(dtype)
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**config("sdxl-base-1.0", "text_encoder_2"))).to(dtype)
    scheduler = EulerDiscreteScheduler.from_config(config("sdxl-base-1.0", "scheduler"))
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tok1, tokenizer_2=tok2, unet=unet, scheduler=scheduler
    )
    pipe.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]
    return pipe


def build_flux(device: str, dtype: Any) -> Any:
    import tempfile

    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from generation.engine.tiny import _clip_tokenizer, _t5_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tok1 = _clip_tokenizer(Path(tmp))
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build in bf16: an fp32 FLUX would need 48 GB just for its weights
    try:
        with torch.device(device):
            transformer = FluxTransformer2DModel.from_config(config("flux1-dev", "transformer"))
            te2 = T5EncoderModel(T5Config(**config("flux1-dev", "text_encoder_2")))
            te1 = CLIPTextModel(CLIPTextConfig(**config("flux1-dev", "text_encoder")))
            vae = AutoencoderKL.from_config(config("flux1-dev", "vae"))
    finally:
        torch.set_default_dtype(previous)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(config("flux1-dev", "scheduler"))
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=te1,
        tokenizer=tok1,
        text_encoder_2=te2,
        tokenizer_2=_t5_tokenizer(),
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]
    return pipe


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def compare(device: str, repeats: int, bare: Any, engine: Any) -> tuple[float, float]:
    """Medians of ``bare`` and ``engine`` calls, interleaved, after one warm-up of each."""

    def timed(fn: Any) -> float:
        synchronize(device)
        started = time.perf_counter()
        fn()
        synchronize(device)
        return time.perf_counter() - started

    timed(bare)
    timed(engine)
    bare_times, engine_times = [], []
    for _ in range(repeats):
        bare_times.append(timed(bare))
        engine_times.append(timed(engine))
    return statistics.median(bare_times), statistics.median(engine_times)


def params(module: Any) -> str:
    """The module's parameter count, as the configs' sources state it (B) or in millions (tiny)."""
    count = sum(p.numel() for p in module.parameters())
    return f"{count / 1e9:.2f} B" if count >= 1e8 else f"{count / 1e6:.2f} M"


def bare_call(pipe: Any, *, size: int, steps: int, guidance: float, extra: dict[str, Any]) -> None:
    """What a diffusers user writes: one call with a seeded generator, then the image saved as PNG.
    ``extra`` holds the call options the engine passes too (FLUX's ``max_sequence_length``)."""
    import torch

    image = pipe(
        prompt=PROMPT,
        width=size,
        height=size,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(SEED),
        **extra,
    ).images[0]
    image.save(io.BytesIO(), format="PNG")


def setup_django(data_dir: Path) -> None:
    """A throw-away SQLite database for the run rows the engine side writes its progress to."""
    os.environ.update({"HOFFDESK_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "hoffdesk_images.settings"})
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def running_row(profile_name: str, size: int, steps: int, guidance: float) -> Any:
    """A run claimed as a worker claims it, so that its progress writes and cancel checks are real."""
    from generation.models import GenerationRun

    run = GenerationRun.objects.create(
        model_profile=profile_name,
        prompt=PROMPT,
        width=size,
        height=size,
        steps=steps,
        guidance=guidance,
        base_seed=SEED,
        count=1,
    )
    if not run.claim(max_attempts=1):
        raise BenchError(f"could not claim run {run.pk}")
    run.refresh_from_db()
    return run


def check_progress_and_cancel(key: str, run: Any, engine: Callable[[Callable[[int, int], None]], Any]) -> None:
    """The row holds the last step; a cancel on the row stops the engine at its next write."""
    from generation.engine.generate import Cancelled
    from generation.tasks import _progress_reporter

    run.refresh_from_db()
    if (run.progress_step, run.progress_total) != (run.steps, run.steps):
        raise BenchError(f"{key}: run {run.pk} shows step {run.progress_step} of {run.progress_total}, not {run.steps}")
    print(f"{key}: progress written to run {run.pk}: step {run.progress_step} of {run.progress_total}", flush=True)
    if not run.request_cancel():
        raise BenchError(f"{key}: run {run.pk} could not be cancelled")
    steps_seen: list[int] = []
    reporter = _progress_reporter(run)

    def counting(step: int, total: int) -> None:
        steps_seen.append(step)
        reporter(step, total)

    try:
        engine(counting)
    except Cancelled:
        print(f"{key}: a cancel stopped the engine at step {steps_seen[-1]} of {run.steps}", flush=True)
    else:
        raise BenchError(f"{key}: the engine ran all {run.steps} steps of a cancelled run")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models at 128 px, 2 steps: the code path on a CPU")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["sdxl", "flux"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads on a CPU")
    parser.add_argument(
        "--target", type=float, default=None, help=f"largest engine/bare ratio (default {TARGET:g}; none with --smoke)"
    )
    parser.add_argument(
        "--vram-gib", type=float, default=None, help="simulate a card of this size: memory cap and memory plan"
    )
    parser.add_argument(
        "--fp8-storage", action="store_true", help="with --vram-gib: allow fp8 weights (HOFFDESK_FP8_STORAGE)"
    )
    args = parser.parse_args()
    target = args.target if args.target is not None else (None if args.smoke else TARGET)

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.smoke:
        print("no CUDA device: run with --smoke for a CPU check of the code path", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    if args.vram_gib and device == "cuda":
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.vram_gib * 2**30 / total))
        print(f"memory capped at {args.vram_gib:g} GiB of this card's {total / 2**30:.0f} GiB", flush=True)
    data_dir = Path(tempfile.mkdtemp(prefix="hoffdesk-gpu-bench-"))
    try:
        setup_django(data_dir)
        ratios = measure_on_card(args, device) if args.vram_gib else measure(args, device)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    if args.vram_gib:
        print("target: none with --vram-gib (figures to record in docs/benchmarks.md)")
        return 0
    if target is None:
        print("target: not checked in --smoke (tiny random models on a CPU; pass --target to check one)")
        return 0
    worst = max(ratios.values())
    verdict = "PASS" if worst <= target else "FAIL"
    print(f"target: engine/bare <= {target:g}, worst {worst:.3f}  {verdict}")
    return 0 if verdict == "PASS" else 1


def measure(args: argparse.Namespace, device: str) -> dict[str, float]:
    """Each family's engine/bare ratio, printing the figures as it goes."""
    import torch

    from generation.engine.generate import Recipe, generate
    from generation.engine.loader import PipelineCache, free_memory
    from generation.engine.tiny import build_tiny_flux, build_tiny_sdxl
    from generation.profiles import get_profile
    from generation.tasks import _progress_reporter

    size = 128 if args.smoke else 1024
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {args.threads} torch threads"
    print(f"device: {name}; torch {torch.__version__}; {size}x{size}; medians of {args.repeats} after a warm-up")
    cache = PipelineCache(Path("/nonexistent"), device=device)
    # (family, full-size profile and builder, smoke profile and builder, dtype, steps, guidance, core)
    cases = [
        ("sdxl", "sdxl-base", build_sdxl, "tiny-sdxl", build_tiny_sdxl, torch.float16, 30, 7.0, "unet"),
        ("flux", "flux-dev-nf4", build_flux, "tiny-flux", build_tiny_flux, torch.bfloat16, 28, 3.5, "transformer"),
    ]
    ratios: dict[str, float] = {}
    for key, real_name, build, smoke_name, build_smoke, dtype, steps, guidance, core in cases:
        if args.only and args.only != key:
            continue
        steps = 2 if args.smoke else steps
        dtype = dtype if device == "cuda" else torch.float32
        started = time.perf_counter()
        pipe = build_smoke() if args.smoke else build(device, dtype)
        pipe.set_progress_bar_config(disable=True)
        synchronize(device)
        built = time.perf_counter() - started
        print(f"{key}: built {params(getattr(pipe, core))}-parameter {core} in {built:.1f} s", flush=True)
        profile = get_profile(smoke_name if args.smoke else real_name)
        cache.put(profile, pipe)
        recipe = Recipe(profile.name, PROMPT, "", size, size, steps, guidance, (SEED,))
        run = running_row(profile.name, size, steps, guidance)

        def engine(on_step: Callable[[int, int], None], profile: Any = profile, recipe: Any = recipe) -> Any:
            return generate(cache, profile, recipe, on_step)

        extra = dict(profile.pipeline_kwargs)
        b, e = compare(
            device,
            args.repeats,
            bare=lambda: bare_call(pipe, size=size, steps=steps, guidance=guidance, extra=extra),  # noqa: B023
            engine=lambda: engine(_progress_reporter(run)),  # noqa: B023  (a fresh callback per run, as the worker's)
        )
        peak = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device == "cuda" else ""
        print(f"{key}: {steps} steps, bare diffusers {b:.2f} s, engine {e:.2f} s, ratio {e / b:.3f}{peak}", flush=True)
        ratios[key] = e / b
        check_progress_and_cancel(key, run, engine)
        cache.evict_big()
        pipe = None
        free_memory()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
    return ratios


def measure_on_card(args: argparse.Namespace, device: str) -> dict[str, float]:
    """``--vram-gib``: each model placed by the worker's memory plan for a card of that size, a
    1216x640 hero made through the engine; prints the plan, peak reserved memory and s/image.
    Returns nothing to hold against a target (these are figures to record, not a ratio)."""
    import dataclasses

    import torch

    from generation.engine.generate import Recipe, generate
    from generation.engine.loader import PipelineCache, apply_memory_plan, choose_memory_plan, free_memory
    from generation.engine.tiny import build_tiny_flux, build_tiny_sdxl
    from generation.profiles import get_profile

    width, height = (128, 64) if args.smoke else (1216, 640)
    cache = PipelineCache(Path("/nonexistent"), device=device, vram_gib=args.vram_gib)
    # (family, profile, builder, smoke profile, smoke builder, dtype, steps, hires)
    cases = [
        ("flux", "flux-dev-nf4", build_flux, "tiny-flux", build_tiny_flux, torch.bfloat16, 28, None),
        ("sdxl", "sdxl-turbo", build_sdxl, "tiny-sdxl", build_tiny_sdxl, torch.float16, 4, 2.0),
    ]
    for key, real_name, build, smoke_name, build_smoke, dtype, steps, hires in cases:
        if args.only and args.only != key:
            continue
        steps = 2 if args.smoke else steps
        profile = get_profile(smoke_name if args.smoke else real_name)
        # Random weights are unquantized: plan for what is really there.
        planned = dataclasses.replace(profile, quantization=None, quantize_components=())
        plan = choose_memory_plan(
            planned, device=device, card=args.vram_gib if device == "cuda" else None, headroom_gib=1.0,
            width=int(width * (hires or 1)), height=int(height * (hires or 1)), fp8_storage=args.fp8_storage,
        )  # fmt: skip
        pipe = build_smoke() if args.smoke else build("cpu", dtype if device == "cuda" else torch.float32)
        apply_memory_plan(pipe, plan, device=device)
        pipe.set_progress_bar_config(disable=True)
        cache.put(profile, pipe, plan)
        hires_fields: dict[str, Any] = {}
        if hires:
            hires_fields = {"hires_scale": hires, "hires_steps": 2, "hires_denoise": 0.5}
        recipe = Recipe(
            profile.name, PROMPT, "", width, height, steps, profile.default_guidance, (SEED,), **hires_fields
        )
        generate(cache, profile, recipe)  # warm-up
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.repeats):
            synchronize(device)
            started = time.perf_counter()
            generate(cache, profile, recipe)
            synchronize(device)
            times.append(time.perf_counter() - started)
        peak = f"{torch.cuda.max_memory_reserved() / 2**30:.2f} GiB" if device == "cuda" else "n/a (CPU)"
        size = f"{width}x{height}" + (f" + {hires:g}x hires" if hires else "")
        print(
            f"{key}: plan {plan.label!r} (computed peak {plan.peak_gib} GiB), {size}, {steps} steps, "
            f"{statistics.median(times):.2f} s/image, peak reserved {peak}",
            flush=True,
        )
        cache.evict_big()
        pipe = None
        free_memory()
    return {}


if __name__ == "__main__":
    sys.exit(main())
