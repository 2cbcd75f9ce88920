"""SDXL and FLUX.1 at full size on a GPU: the engine against bare diffusers.

Builds each architecture from the published configs vendored in generation/architectures/
(SDXL UNet 2.57 B, FLUX.1-dev transformer 11.9 B + T5-XXL 4.76 B parameters) with random
weights directly on the GPU: no download, and speed does not depend on the weights' values.
Then times a 1024x1024 image, as medians over --repeats calls after a warm-up:

- bare: the pipeline called directly, the way a diffusers user would;
- engine: ``generation.engine.generate.generate`` (CPU generators per seed, progress callback
  every step, PNG encoding with provenance), with the same pipeline kept warm in its cache.

The models are built in bf16/fp16 without nf4 quantization (an H100 has the memory; nf4 needs
bitsandbytes and changes kernel speed, not the engine's overhead).

Usage on a GPU box:  python bench/gpu_real_size.py
CPU smoke run of the same code with shrunken configs:  python bench/gpu_real_size.py --smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ARCH = ROOT / "generation" / "architectures"


def config(folder: str, component: str, smoke: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        k: v for k, v in json.loads((ARCH / folder / f"{component}.json").read_text()).items() if not k.startswith("_")
    }
    if smoke:  # same classes, a sliver of the depth, so the code path runs on a laptop CPU
        for key, small in {
            "num_layers": 1,
            "num_single_layers": 1,
            "num_hidden_layers": 1,
            "num_decoder_layers": 1,
        }.items():
            if key in data:
                data[key] = small
        if component == "unet":
            data["transformer_layers_per_block"] = [1 for _ in data["transformer_layers_per_block"]]
    return data


def build_sdxl(smoke: bool, device: str, dtype: Any) -> Any:
    import tempfile

    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from generation.engine.tiny import _clip_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tok1, tok2 = _clip_tokenizer(Path(tmp) / "1"), _clip_tokenizer(Path(tmp) / "2")
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(config("sdxl-base-1.0", "unet", smoke)).to(dtype)
        vae = AutoencoderKL.from_config(config("sdxl-base-1.0", "vae", smoke)).to(dtype)
        te1 = CLIPTextModel(CLIPTextConfig(**config("sdxl-base-1.0", "text_encoder", smoke))).to(dtype)
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**config("sdxl-base-1.0", "text_encoder_2", smoke))).to(dtype)
    scheduler = EulerDiscreteScheduler.from_config(config("sdxl-base-1.0", "scheduler", smoke))
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tok1, tokenizer_2=tok2, unet=unet, scheduler=scheduler
    )
    pipe.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]
    return pipe


def build_flux(smoke: bool, device: str, dtype: Any) -> Any:
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
            transformer = FluxTransformer2DModel.from_config(config("flux1-dev", "transformer", smoke))
            te2 = T5EncoderModel(T5Config(**config("flux1-dev", "text_encoder_2", smoke)))
            te1 = CLIPTextModel(CLIPTextConfig(**config("flux1-dev", "text_encoder", smoke)))
            vae = AutoencoderKL.from_config(config("flux1-dev", "vae", smoke))
    finally:
        torch.set_default_dtype(previous)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(config("flux1-dev", "scheduler", smoke))
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


def params(module: Any) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e9


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="shrunken configs at 256 px, to check the code on a CPU")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["sdxl", "flux"])
    args = parser.parse_args()

    import torch

    from generation.engine.generate import Recipe, generate, run_pipeline
    from generation.engine.loader import PipelineCache, free_memory
    from generation.profiles import get_profile

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.smoke:
        print("no CUDA device: run with --smoke for a CPU check of the code path", file=sys.stderr)
        return 2
    size = 256 if args.smoke else 1024
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; {size}x{size}; medians of {args.repeats} after a warm-up")
    cache = PipelineCache(Path("/nonexistent"), device=device)
    cases = [
        ("sdxl", "sdxl-base", build_sdxl, torch.float16, 30, 7.0, "unet"),
        ("flux", "flux-dev-nf4", build_flux, torch.bfloat16, 28, 3.5, "transformer"),
    ]
    for key, profile_name, build, dtype, steps, guidance, core in cases:
        if args.only and args.only != key:
            continue
        dtype = dtype if device == "cuda" else torch.float32
        started = time.perf_counter()
        pipe = build(args.smoke, device, dtype)
        synchronize(device)
        built = time.perf_counter() - started
        print(f"{key}: built {params(getattr(pipe, core)):.2f} B-parameter {core} in {built:.1f} s")
        profile = get_profile(profile_name)
        cache.put(profile, pipe)
        recipe = Recipe(profile_name, "a lighthouse at dusk, photorealistic", "", size, size, steps, guidance, (1234,))
        b, e = compare(
            device,
            args.repeats,
            bare=lambda: run_pipeline(pipe, profile, recipe),  # noqa: B023  (called inside this iteration)
            engine=lambda: generate(cache, profile, recipe, lambda step, total: None),  # noqa: B023
        )
        peak = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device == "cuda" else ""
        print(f"{key}: {steps} steps, bare diffusers {b:.2f} s, engine {e:.2f} s, ratio {e / b:.3f}{peak}")
        cache.evict_big()
        pipe = None
        free_memory()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
    return 0


if __name__ == "__main__":
    sys.exit(main())
