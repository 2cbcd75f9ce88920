"""Making a run's candidates: one batched pipeline call, one seed and generator per image.

Variation seeds work as in AUTOMATIC1111: each image's start noise is its seed's noise moved
towards its subseed's noise by spherical interpolation (``subseed_strength`` 0 is the seed's
image, 1 the subseed's). Without them the pipeline draws its own noise, as it always has.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from generation.engine import previews, upscale
from generation.engine.draft_cache import draft_cache_applied
from generation.engine.loader import EngineError, PipelineCache, free_memory
from generation.engine.metadata import comfyui_workflow, encode_png, hires_size
from generation.profiles import COMFYUI_CHECKPOINTS, ModelProfile
from generation.results import GeneratedImage, GenerationResult

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
    # Variation seeds: one per seed, and how far (0 to 1) each image moves towards its subseed.
    subseeds: tuple[int, ...] | None = None
    subseed_strength: float = 0.0
    # Demo mode: the real profile this tiny model stands in for (said so in the PNG's recipe).
    stand_in_for: str | None = None
    # Hires fix, as AUTOMATIC1111's: make the image at width x height, enlarge it by hires_scale
    # (rounded down to the profile's size multiple) with hires_upscaler ("lanczos" or an upscaler
    # file's stem), then an image-to-image pass of hires_steps steps (the steps that actually
    # run) at hires_denoise strength. hires_scale None: no second pass.
    hires_scale: float | None = None
    hires_upscaler: str = upscale.LANCZOS
    hires_steps: int = 0
    hires_denoise: float = 0.0
    # Draft mode: a fast first look. ``draft_cache`` is diffusers' cache acceleration on the
    # transformer for the first pass ({"kind": "FirstBlockCache", "threshold": 0.08}; see
    # ``draft_cache``); None: none (a UNet draft is fewer steps only, decided before queueing).
    draft: bool = False
    draft_cache: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.subseeds is not None and len(self.subseeds) != len(self.seeds):
            raise ValueError(f"{len(self.subseeds)} subseeds for {len(self.seeds)} seeds: give one per seed")
        if not 0.0 <= self.subseed_strength <= 1.0:
            raise ValueError(f"subseed_strength must be between 0 and 1, not {self.subseed_strength}")
        if self.hires_scale is None:
            return
        if not 1.0 <= self.hires_scale <= 4.0:
            raise ValueError(f"hires_scale must be between 1 and 4, not {self.hires_scale}")
        if self.hires_steps < 1:
            raise ValueError(f"hires_steps must be at least 1, not {self.hires_steps}")
        if not 0.0 < self.hires_denoise <= 1.0:
            raise ValueError(f"hires_denoise must be above 0 and at most 1, not {self.hires_denoise}")
        if not self.hires_upscaler:
            raise ValueError('hires_upscaler must name an upscaler ("lanczos" or an upscaler file\'s stem)')

    @classmethod
    def from_image(cls, data: dict[str, Any]) -> Recipe:
        """The recipe that makes the batch of an image again, from the JSON in its PNG
        (``metadata.read_recipe``): same profile, stand-in note, seeds and variation."""
        subseeds = data.get("subseeds")
        return cls(
            profile=data["profile"],
            prompt=data["prompt"],
            negative_prompt=data["negative_prompt"],
            width=data["width"],
            height=data["height"],
            steps=data["steps"],
            guidance=data["guidance"],
            seeds=tuple(data["seeds"]),
            subseeds=tuple(subseeds) if subseeds is not None else None,
            subseed_strength=data.get("subseed_strength") or 0.0,
            stand_in_for=data.get("stand_in_for"),
            hires_scale=data.get("hires_scale"),
            hires_upscaler=data.get("hires_upscaler") or upscale.LANCZOS,
            hires_steps=data.get("hires_steps") or 0,
            hires_denoise=data.get("hires_denoise") or 0.0,
            draft=bool(data.get("draft")),
            draft_cache=data.get("draft_cache"),
        )

    @property
    def has_hires(self) -> bool:
        """Whether the images get a second, image-to-image pass at a larger size."""
        return self.hires_scale is not None

    @property
    def has_variation(self) -> bool:
        """Whether the start noise is mixed with subseeds' (else the pipeline draws it, as ever)."""
        return self.subseeds is not None and self.subseed_strength > 0


def image_recipe(profile: ModelProfile, recipe: Recipe, pipe: Any, index: int) -> dict[str, Any]:
    """The JSON written into one PNG: enough to make that image again, nothing run-specific.

    A demo stand-in says so: ``profile`` is the tiny model that made the pixels and
    ``stand_in_for`` the real profile that was asked for (absent when no stand-in ran, so
    recipes from before demo mode read and re-make the same).
    """
    import diffusers

    stand_in = {"stand_in_for": recipe.stand_in_for} if recipe.stand_in_for else {}
    return {
        **stand_in,
        **_hires_recipe(profile, recipe),
        **_draft_recipe(recipe),
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
        "subseed": recipe.subseeds[index] if recipe.has_variation and recipe.subseeds is not None else None,
        "subseeds": list(recipe.subseeds) if recipe.has_variation and recipe.subseeds is not None else None,
        "subseed_strength": float(recipe.subseed_strength) if recipe.has_variation else 0.0,
        "batch_size": len(recipe.seeds),
        "batch_index": index,
        "generator_device": "cpu",
        "diffusers": diffusers.__version__,
        "torch": torch.__version__.split("+")[0],
    }


def _draft_recipe(recipe: Recipe) -> dict[str, Any]:
    """A draft's keys (none for a full-quality run, so older recipes read the same): that it is
    one, and the cache with its settings (null: fewer steps only)."""
    if not recipe.draft:
        return {}
    return {"draft": True, "draft_cache": dict(recipe.draft_cache) if recipe.draft_cache else None}


def _hires_recipe(profile: ModelProfile, recipe: Recipe) -> dict[str, Any]:
    """The hires keys of an image's JSON (none without hires, so older recipes read the same):
    the four that decide it, and the final size they give (``width``/``height`` stay the first
    pass's, as AUTOMATIC1111's ``Size``)."""
    if recipe.hires_scale is None:
        return {}
    width, height = hires_size(recipe.width, recipe.height, recipe.hires_scale, profile.size_multiple)
    return {
        "hires_scale": float(recipe.hires_scale),
        "hires_upscaler": recipe.hires_upscaler,
        "hires_steps": recipe.hires_steps,
        "hires_denoise": float(recipe.hires_denoise),
        "hires_width": width,
        "hires_height": height,
    }


def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from ``low`` (``val`` 0) to ``high`` (``val`` 1), as AUTOMATIC1111's
    ``slerp`` in modules/processing.py, over each tensor taken whole (one image's noise)."""
    low_flat = low.flatten()
    high_flat = high.flatten()
    dot = torch.dot(low_flat / torch.norm(low_flat), high_flat / torch.norm(high_flat))
    if dot > 0.9995:
        # Nearly parallel: sin(omega) is too small to divide by.
        return low * (1.0 - val) + high * val
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so) * low + (torch.sin(val * omega) / so) * high


def _denoiser(pipe: Any, profile: ModelProfile) -> Any:
    return pipe.unet if profile.family in ("sd", "sdxl") else pipe.transformer


def _noise_shape(pipe: Any, profile: ModelProfile, recipe: Recipe) -> tuple[int, ...]:
    """One image's start noise, shaped as the pipeline's ``prepare_latents`` draws it (batch 1)."""
    factor = pipe.vae_scale_factor
    if profile.family in ("sd", "sdxl", "sd3"):
        channels = _denoiser(pipe, profile).config.in_channels
        return (1, channels, recipe.height // factor, recipe.width // factor)
    if profile.family == "flux":
        # Unpacked: a quarter of the transformer's channels, each side a multiple of 2 latents.
        channels = pipe.transformer.config.in_channels // 4
        return (1, channels, 2 * (recipe.height // (factor * 2)), 2 * (recipe.width // (factor * 2)))
    raise EngineError(f"variation seeds are not supported for the {profile.family} family ({profile.name})")


def _generators(recipe: Recipe) -> list[torch.Generator]:
    # CPU generators: the same seed gives the same start noise on any device.
    return [torch.Generator("cpu").manual_seed(seed) for seed in recipe.seeds]


def initial_latents(
    pipe: Any, profile: ModelProfile, recipe: Recipe, generators: list[torch.Generator] | None = None
) -> torch.Tensor:
    """The batch's start noise, drawn as diffusers' ``randn_tensor`` draws it from one CPU
    generator per image, each image's moved towards its subseed's noise by ``slerp``.

    ``generators`` (one per seed, fresh) are the ones the pipeline call then gets: drawing the
    noise from them leaves them where the pipeline would have, so a sampler that adds noise at
    each step (Euler a) draws the same. With strength 0 the result is the pipeline's own noise.
    """
    shape = _noise_shape(pipe, profile, recipe)
    generators = generators if generators is not None else _generators(recipe)
    images = []
    for index, generator in enumerate(generators):
        noise = torch.randn(shape, generator=generator, device="cpu", dtype=torch.float32)
        if recipe.subseeds is not None:
            sub_generator = torch.Generator("cpu").manual_seed(recipe.subseeds[index])
            sub = torch.randn(shape, generator=sub_generator, device="cpu", dtype=torch.float32)
            noise = slerp(recipe.subseed_strength, noise, sub)
        images.append(noise)
    latents = torch.cat(images, dim=0)
    if profile.family == "flux":
        _, channels, height, width = latents.shape
        latents = pipe._pack_latents(latents, latents.shape[0], channels, height, width)
    return latents.to(dtype=_denoiser(pipe, profile).dtype)


def _call_kwargs(
    profile: ModelProfile, recipe: Recipe, generators: list[torch.Generator], latents: torch.Tensor | None
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "prompt": recipe.prompt,
        "width": recipe.width,
        "height": recipe.height,
        "num_inference_steps": recipe.steps,
        "guidance_scale": recipe.guidance,
        "num_images_per_prompt": len(recipe.seeds),
        "generator": generators,
    }
    if latents is not None:
        kwargs["latents"] = latents
    if profile.supports_negative_prompt and recipe.negative_prompt:
        kwargs["negative_prompt"] = recipe.negative_prompt
    kwargs.update(profile.pipeline_kwargs)
    return kwargs


def run_pipeline(
    pipe: Any,
    profile: ModelProfile,
    recipe: Recipe,
    on_step: ProgressCallback | None = None,
    *,
    own_latents: bool | None = None,
    total: int | None = None,
) -> list[Any]:
    """One batched call; ``on_step(done, total)`` after each step may raise ``Cancelled``.

    The start noise is made here (``initial_latents``) when the recipe has variation seeds, and
    left to the pipeline otherwise; ``own_latents`` forces either way (tests compare the two).
    ``total`` is the run's whole step count when a hires pass follows (default: this pass's).
    """
    total_steps = recipe.steps if total is None else total

    def callback(_pipe: Any, step: int, _timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        if on_step is not None:
            on_step(step + 1, total_steps)
            # Live previews for a caller that takes them (generation.engine.previews.PreviewSink).
            previews.offer(
                on_step, _pipe, profile.family, callback_kwargs, width=recipe.width, height=recipe.height, step=step + 1
            )
        return callback_kwargs

    generators = _generators(recipe)
    use_own = recipe.has_variation if own_latents is None else own_latents
    latents = initial_latents(pipe, profile, recipe, generators) if use_own else None
    output = pipe(**_call_kwargs(profile, recipe, generators, latents), callback_on_step_end=callback)
    return list(output.images)


def hires_pipeline(pipe: Any) -> Any:
    """The image-to-image pipeline of ``pipe``'s family over ``pipe``'s own modules (diffusers'
    ``from_pipe``: no second copy of any weights), with a scheduler of its own: the second pass
    sets its timesteps and begin index, which must never leak into the next first pass."""
    from diffusers import AutoPipelineForImage2Image

    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    second = AutoPipelineForImage2Image.from_pipe(pipe, scheduler=scheduler)
    second.set_progress_bar_config(disable=True)
    return second


def _steps_run(family: str, schedule: int, strength: float) -> int:
    """How many steps diffusers' image-to-image ``get_timesteps`` runs of a ``schedule``-step
    schedule at ``strength``: SD and SDXL truncate ``schedule x strength``, FLUX and SD3
    truncate the steps they skip instead (so they round the other way)."""
    if family in ("sd", "sdxl"):
        return min(int(schedule * strength), schedule)
    return schedule - int(max(schedule - min(schedule * strength, schedule), 0))


def hires_schedule(family: str, steps: int, denoise: float) -> int:
    """The ``num_inference_steps`` that makes the second pass run exactly ``steps`` steps at
    ``denoise`` (AUTOMATIC1111's meaning of "Hires steps": the steps that run, over a schedule
    stretched to about ``steps / denoise``), the schedule whose start is nearest ``denoise``."""
    fits = [n for n in range(steps, math.ceil(steps / denoise) + 2) if _steps_run(family, n, denoise) == steps]
    if not fits:
        raise EngineError(f"no schedule runs exactly {steps} hires steps at denoising strength {denoise}")
    return min(fits, key=lambda n: (abs(steps / n - denoise), n))


def enlarge(images: list[Image.Image], size: tuple[int, int], upscaler: upscale.Upscaler | None) -> list[Image.Image]:
    """Each image at ``size``: through the upscaler model (again while still too small, as
    AUTOMATIC1111 does), then Lanczos to the exact size; Lanczos alone without a model."""
    enlarged = []
    for image in images:
        image = image.convert("RGB")
        if upscaler is not None:
            for _ in range(4):
                if image.width >= size[0] and image.height >= size[1]:
                    break
                image = upscale.upscale_image(upscaler, image)
                if upscaler.scale == 1:
                    break
        if image.size != size:
            image = image.resize(size, Image.Resampling.LANCZOS)
        enlarged.append(image)
    return enlarged


def run_hires_pass(
    pipe: Any,
    profile: ModelProfile,
    recipe: Recipe,
    images: list[Image.Image],
    upscaler: upscale.Upscaler | None,
    on_step: ProgressCallback | None = None,
    *,
    done: int = 0,
) -> list[Any]:
    """The second pass: ``images`` enlarged, then image-to-image on the same weights.

    Each image gets a fresh CPU generator seeded with its own seed (as AUTOMATIC1111's hires
    pass), so an exact re-run is byte-identical. Progress goes on from ``done`` steps to
    ``done + hires_steps``; ``on_step`` may raise ``Cancelled``.
    """
    assert recipe.hires_scale is not None
    size = hires_size(recipe.width, recipe.height, recipe.hires_scale, profile.size_multiple)
    enlarged = enlarge(images, size, upscaler)
    total = done + recipe.hires_steps

    def callback(_pipe: Any, step: int, _timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        if on_step is not None:
            on_step(done + step + 1, total)
            previews.offer(
                on_step, _pipe, profile.family, callback_kwargs, width=size[0], height=size[1], step=done + step + 1
            )
        return callback_kwargs

    kwargs: dict[str, Any] = {
        "prompt": recipe.prompt,
        "image": enlarged,
        "strength": recipe.hires_denoise,
        "num_inference_steps": hires_schedule(profile.family, recipe.hires_steps, recipe.hires_denoise),
        "guidance_scale": recipe.guidance,
        "num_images_per_prompt": len(recipe.seeds),
        "generator": _generators(recipe),
    }
    if profile.family in ("flux", "sd3"):  # the others take the size from the image
        kwargs["width"], kwargs["height"] = size
    if profile.supports_negative_prompt and recipe.negative_prompt:
        kwargs["negative_prompt"] = recipe.negative_prompt
    kwargs.update(profile.pipeline_kwargs)
    second = hires_pipeline(pipe)
    try:
        output = second(**kwargs, callback_on_step_end=callback)
    finally:
        # Under model CPU offload the second pipeline does not own the hooks: put every module
        # back where the first pipeline's offload expects it.
        pipe.maybe_free_model_hooks()
    return list(output.images)


def _size_text(profile: ModelProfile, recipe: Recipe) -> str:
    if recipe.hires_scale is None:
        return f"{recipe.width}x{recipe.height}"
    width, height = hires_size(recipe.width, recipe.height, recipe.hires_scale, profile.size_multiple)
    return f"{recipe.width}x{recipe.height} (hires pass to {width}x{height})"


def _source(data: bytes, index: int, recipe: Recipe) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        if image.size != (recipe.width, recipe.height):
            raise EngineError(
                f"source image {index} is {image.width}x{image.height}, the recipe says {recipe.width}x{recipe.height}"
            )
        return image.convert("RGB")


def generate(
    cache: PipelineCache,
    profile: ModelProfile,
    recipe: Recipe,
    on_step: ProgressCallback | None = None,
    *,
    source_images: list[bytes] | None = None,
    comfyui_checkpoint: str | None = None,
) -> GenerationResult:
    """Make the run's images as PNG bytes with provenance, or raise ``EngineError``/``Cancelled``.

    ``comfyui_checkpoint`` names the checkpoint file of the ComfyUI workflow each PNG carries
    (``metadata.comfyui_workflow``; empty: none). The worker passes HOFFDESK_COMFYUI_CHECKPOINTS'
    entry; None takes the default table's (the asked-for profile's when a stand-in ran).

    With ``source_images`` (PNG bytes at the recipe's width x height, one per seed; "Make hero
    size") the first pass is skipped and those images take the hires pass alone: from a run's
    own first-pass images that gives the very bytes of the full hires run.
    """
    if source_images is not None:
        if not recipe.has_hires:
            raise EngineError("source images need a recipe with a hires pass (hires_scale)")
        if len(source_images) != len(recipe.seeds):
            raise EngineError(f"{len(source_images)} source images for {len(recipe.seeds)} seeds: give one per seed")
        sources = [_source(data, index, recipe) for index, data in enumerate(source_images)]
    upscaler = None
    if recipe.has_hires and recipe.hires_upscaler != upscale.LANCZOS:
        # Before any step: a missing or broken upscaler fails the run now, never after the first pass.
        path = upscale.upscaler_path(cache.models_dir, recipe.hires_upscaler)
        upscaler = upscale.load_upscaler(path, device=cache.device)
    if profile.is_real and cache.device == "cpu":
        # A real model on the CPU would need tens of GB of RAM and hours: refuse before loading.
        raise EngineError(
            f"{profile.name} needs an NVIDIA GPU with CUDA, and this worker's torch ({torch.__version__}) "
            "sees none. On the GPU box install a CUDA build of torch (HOFFDESK_TORCH_SPEC, see "
            "docs/models.md); for the offline demo use a tiny-* profile."
        )
    try:
        # Placed for the largest pass (the hires one when there is one): issue 18's memory plan.
        width, height = (recipe.width, recipe.height)
        if recipe.hires_scale is not None:
            width, height = hires_size(recipe.width, recipe.height, recipe.hires_scale, profile.size_multiple)
        pipe, load_seconds = cache.get(profile, width=width, height=height, images=len(recipe.seeds))
    except EngineError:
        raise
    except Exception as exc:
        free_memory()
        raise EngineError(f"Could not load {profile.name}: {type(exc).__name__}: {exc}") from exc
    started = time.perf_counter()
    try:
        if source_images is None:
            total = recipe.steps + (recipe.hires_steps if recipe.has_hires else 0)
            # The draft's cache on the first pass only, and off again before anything else runs.
            with draft_cache_applied(pipe, profile.name, recipe.draft_cache):
                images = run_pipeline(pipe, profile, recipe, on_step, total=total)
            done = recipe.steps
        else:
            images, done = sources, 0
        if recipe.has_hires:
            images = run_hires_pass(pipe, profile, recipe, images, upscaler, on_step, done=done)
    except Cancelled:
        raise
    except torch.OutOfMemoryError as exc:
        free_memory()
        raise EngineError(
            f"Out of GPU memory making {len(recipe.seeds)} images at {_size_text(profile, recipe)} "
            f"with {profile.name}. Try fewer candidates or a smaller size, or close other programs "
            "using the GPU."
        ) from exc
    except Exception as exc:
        free_memory()
        raise EngineError(f"{profile.name} failed: {type(exc).__name__}: {exc}") from exc
    inference_seconds = time.perf_counter() - started
    recipes = [image_recipe(profile, recipe, pipe, index) for index in range(len(images))]
    if comfyui_checkpoint is None:
        comfyui_checkpoint = COMFYUI_CHECKPOINTS.get(recipe.stand_in_for or profile.name, "")
    workflows = [comfyui_workflow(data, family=profile.family, checkpoint=comfyui_checkpoint) for data in recipes]
    # zlib releases the GIL: encoding the batch on threads takes about half the time.
    with ThreadPoolExecutor(max_workers=min(len(images), os.cpu_count() or 1)) as pool:
        pngs = list(pool.map(encode_png, images, recipes, workflows))
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
