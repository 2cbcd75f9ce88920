"""Making a run's candidates: one batched pipeline call, one seed and generator per image."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from generation.engine.loader import EngineError, PipelineCache, free_memory
from generation.engine.metadata import encode_png
from generation.profiles import ModelProfile

HOFFDESK_VERSION = "0.1.0"

ProgressCallback = Callable[[int, int], None]


class Cancelled(Exception):
    """Raised from a progress callback to stop a run at the next step."""


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the pixels of a run's images."""

    profile: str
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class GeneratedImage:
    index: int
    seed: int
    png: bytes
    sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class GenerationResult:
    images: list[GeneratedImage]
    load_seconds: float
    inference_seconds: float


def image_recipe(profile: ModelProfile, recipe: Recipe, pipe: Any, index: int) -> dict[str, Any]:
    """The JSON written into one PNG: enough to make that image again, nothing run-specific."""
    import diffusers

    return {
        "generator": "hoffdesk-images",
        "hoffdesk_version": HOFFDESK_VERSION,
        "profile": profile.name,
        "pipeline": profile.pipeline_class,
        "scheduler": type(pipe.scheduler).__name__,
        "sampler": profile.sampler,
        "prompt": recipe.prompt,
        "negative_prompt": recipe.negative_prompt if profile.supports_negative_prompt else "",
        "width": recipe.width,
        "height": recipe.height,
        "steps": recipe.steps,
        "guidance": recipe.guidance,
        "seed": recipe.seeds[index],
        "seeds": list(recipe.seeds),
        "batch_size": len(recipe.seeds),
        "batch_index": index,
        "generator_device": "cpu",
        "diffusers": diffusers.__version__,
        "torch": torch.__version__.split("+")[0],
    }


def _call_kwargs(profile: ModelProfile, recipe: Recipe) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "prompt": recipe.prompt,
        "width": recipe.width,
        "height": recipe.height,
        "num_inference_steps": recipe.steps,
        "guidance_scale": recipe.guidance,
        "num_images_per_prompt": len(recipe.seeds),
        # CPU generators: the same seed gives the same start noise on any device.
        "generator": [torch.Generator("cpu").manual_seed(seed) for seed in recipe.seeds],
    }
    if profile.supports_negative_prompt and recipe.negative_prompt:
        kwargs["negative_prompt"] = recipe.negative_prompt
    kwargs.update(profile.pipeline_kwargs)
    return kwargs


def run_pipeline(
    pipe: Any, profile: ModelProfile, recipe: Recipe, on_step: ProgressCallback | None = None
) -> list[Any]:
    """One batched call; ``on_step(done, total)`` after each step may raise ``Cancelled``."""

    def callback(_pipe: Any, step: int, _timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        if on_step is not None:
            on_step(step + 1, recipe.steps)
        return callback_kwargs

    output = pipe(**_call_kwargs(profile, recipe), callback_on_step_end=callback)
    return list(output.images)


def generate(
    cache: PipelineCache,
    profile: ModelProfile,
    recipe: Recipe,
    on_step: ProgressCallback | None = None,
) -> GenerationResult:
    """Make the run's images as PNG bytes with provenance, or raise ``EngineError``/``Cancelled``."""
    if profile.is_big and cache.device == "cpu":
        # A real model on the CPU would need tens of GB of RAM and hours: refuse before loading.
        raise EngineError(
            f"{profile.name} needs an NVIDIA GPU with CUDA, and this worker's torch ({torch.__version__}) "
            "sees none. On the GPU box install a CUDA build of torch (HOFFDESK_TORCH_SPEC, see "
            "docs/models.md); for the offline demo use a tiny-* profile."
        )
    try:
        pipe, load_seconds = cache.get(profile)
    except EngineError:
        raise
    except Exception as exc:
        free_memory()
        raise EngineError(f"Could not load {profile.name}: {type(exc).__name__}: {exc}") from exc
    started = time.perf_counter()
    try:
        images = run_pipeline(pipe, profile, recipe, on_step)
    except Cancelled:
        raise
    except torch.OutOfMemoryError as exc:
        free_memory()
        raise EngineError(
            f"Out of GPU memory making {len(recipe.seeds)} images at {recipe.width}x{recipe.height} "
            f"with {profile.name}. Try fewer candidates or a smaller size, or close other programs "
            "using the GPU."
        ) from exc
    except Exception as exc:
        free_memory()
        raise EngineError(f"{profile.name} failed: {type(exc).__name__}: {exc}") from exc
    inference_seconds = time.perf_counter() - started
    recipes = [image_recipe(profile, recipe, pipe, index) for index in range(len(images))]
    # zlib releases the GIL: encoding the batch on threads takes about half the time.
    with ThreadPoolExecutor(max_workers=min(len(images), os.cpu_count() or 1)) as pool:
        pngs = list(pool.map(encode_png, images, recipes))
    results = [
        GeneratedImage(
            index=index,
            seed=recipe.seeds[index],
            png=png,
            sha256=hashlib.sha256(png).hexdigest(),
            width=image.width,
            height=image.height,
        )
        for index, (image, png) in enumerate(zip(images, pngs, strict=True))
    ]
    return GenerationResult(results, load_seconds, inference_seconds)
