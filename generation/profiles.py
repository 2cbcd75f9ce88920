"""Model profiles: what each named model is, read from plain data.

This module never imports torch or diffusers, so the web process can validate a request
against a profile (sizes, steps, counts, guidance) before anything is queued. Native sizes
come from the published architecture configs vendored in ``generation/architectures/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

ARCHITECTURES_DIR = Path(__file__).resolve().parent / "architectures"

MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class ModelProfile:
    """One named model and how to run it on a 12 GB card.

    ``family`` picks the diffusers pipeline class; ``hub_id`` is where ``fetch_models``
    downloads the weights from; the weights are loaded from ``<HOFFDESK_MODELS_DIR>/<name>``
    when that folder exists, and from the hub cache otherwise.
    """

    name: str
    label: str
    family: str  # "sd", "sdxl", "flux", "sd3"
    pipeline_class: str
    hub_id: str | None
    dtype: str  # "float32", "float16", "bfloat16"
    quantization: str | None  # "nf4": bitsandbytes 4-bit for the big components
    quantize_components: tuple[str, ...]
    memory: str  # "gpu", "model_cpu_offload"
    vae_tiling: bool
    default_steps: int
    max_steps: int
    default_guidance: float
    max_guidance: float
    native_width: int
    native_height: int
    size_multiple: int
    min_size: int
    max_size: int
    # Width x height at most (None: any size within min_size..max_size on each edge). The tiny
    # models take a real profile's edges when they stand in for it, within this budget.
    max_pixels: int | None = None
    # Seconds of GPU time per megapixel-step, a conservative guess for a 12 GB card (a tiny model:
    # for two CPU cores) until the worker has finished runs of this profile to learn from.
    seconds_per_megapixel_step: float = 2.0
    tiny: bool = False
    supports_negative_prompt: bool = True
    sampler: str = ""
    licence: str = ""
    pipeline_kwargs: dict[str, object] = field(default_factory=dict)

    @property
    def is_real(self) -> bool:
        """A real model (full-size weights from the hub), not a tiny random-weight one: it needs
        a CUDA GPU and most of a 12 GB card, so the worker keeps only one warm at a time."""
        return not self.tiny


def _architecture(folder: str, component: str) -> dict[str, object]:
    with open(ARCHITECTURES_DIR / folder / f"{component}.json", encoding="utf-8") as fh:
        data: dict[str, object] = json.load(fh)
    return data


def _native_edge(folder: str, component: str, pixels_per_sample: int) -> int:
    """Native edge in pixels from a published config's ``sample_size``: latent samples times
    the VAE factor (8) for a UNet or SD3 transformer, pixels already for a VAE."""
    sample = _architecture(folder, component)["sample_size"]
    assert isinstance(sample, int)
    return sample * pixels_per_sample


def _tiny(
    *,
    name: str,
    label: str,
    family: str,
    pipeline_class: str,
    default_steps: int,
    default_guidance: float,
    max_guidance: float,
    size_multiple: int,
    sampler: str,
    supports_negative_prompt: bool = True,
    pipeline_kwargs: dict[str, object] | None = None,
) -> ModelProfile:
    """A tiny offline profile: what all of them share (float32, no quantization, random weights
    built locally by ``generation.engine.tiny``) filled in around what differs."""
    return ModelProfile(
        name=name,
        label=label,
        family=family,
        pipeline_class=pipeline_class,
        hub_id=None,
        dtype="float32",
        quantization=None,
        quantize_components=(),
        memory="gpu",
        vae_tiling=False,
        default_steps=default_steps,
        max_steps=1000,  # long runs for tests; the GPU-time estimate refuses what cannot finish
        default_guidance=default_guidance,
        max_guidance=max_guidance,
        native_width=512,
        native_height=512,
        size_multiple=size_multiple,
        min_size=64,
        max_size=1024,
        max_pixels=1024 * 1024,
        seconds_per_megapixel_step=2.0,
        tiny=True,
        supports_negative_prompt=supports_negative_prompt,
        sampler=sampler,
        licence="random weights, built locally",
        pipeline_kwargs=pipeline_kwargs or {},
    )


# The FLUX transformer config has no sample size; its VAE config says 1024 px.
REAL_PROFILES: tuple[ModelProfile, ...] = (
    ModelProfile(
        name="flux-dev-nf4",
        label="FLUX.1-dev (4-bit nf4)",
        family="flux",
        pipeline_class="FluxPipeline",
        hub_id="black-forest-labs/FLUX.1-dev",
        dtype="bfloat16",
        quantization="nf4",
        quantize_components=("transformer", "text_encoder_2"),
        memory="model_cpu_offload",
        vae_tiling=True,
        default_steps=28,
        max_steps=50,
        default_guidance=3.5,
        max_guidance=10.0,
        native_width=_native_edge("flux1-dev", "vae", 1),
        native_height=_native_edge("flux1-dev", "vae", 1),
        size_multiple=16,
        min_size=256,
        max_size=2048,
        supports_negative_prompt=False,
        seconds_per_megapixel_step=2.5,
        sampler="Euler (flow matching)",
        licence="FLUX.1 [dev] non-commercial licence: commercial use needs review",
        pipeline_kwargs={"max_sequence_length": 512},
    ),
    ModelProfile(
        name="flux-schnell",
        label="FLUX.1-schnell (4-bit nf4)",
        family="flux",
        pipeline_class="FluxPipeline",
        hub_id="black-forest-labs/FLUX.1-schnell",
        dtype="bfloat16",
        quantization="nf4",
        quantize_components=("transformer", "text_encoder_2"),
        memory="model_cpu_offload",
        vae_tiling=True,
        default_steps=4,
        max_steps=8,
        default_guidance=0.0,
        max_guidance=0.0,
        native_width=_native_edge("flux1-schnell", "vae", 1),
        native_height=_native_edge("flux1-schnell", "vae", 1),
        size_multiple=16,
        min_size=256,
        max_size=2048,
        supports_negative_prompt=False,
        seconds_per_megapixel_step=2.5,
        sampler="Euler (flow matching)",
        licence="Apache-2.0",
        pipeline_kwargs={"max_sequence_length": 256},
    ),
    ModelProfile(
        name="sdxl-turbo",
        label="SDXL Turbo",
        family="sdxl",
        pipeline_class="StableDiffusionXLPipeline",
        hub_id="stabilityai/sdxl-turbo",
        dtype="float16",
        quantization=None,
        quantize_components=(),
        memory="gpu",
        vae_tiling=False,
        default_steps=4,
        max_steps=8,
        default_guidance=0.0,
        max_guidance=2.0,
        native_width=_native_edge("sdxl-turbo", "unet", 8),
        native_height=_native_edge("sdxl-turbo", "unet", 8),
        size_multiple=8,
        min_size=256,
        max_size=1024,
        seconds_per_megapixel_step=0.5,
        sampler="Euler a",
        licence="Stability AI community licence",
    ),
    ModelProfile(
        name="sdxl-base",
        label="SDXL base 1.0",
        family="sdxl",
        pipeline_class="StableDiffusionXLPipeline",
        hub_id="stabilityai/stable-diffusion-xl-base-1.0",
        dtype="float16",
        quantization=None,
        quantize_components=(),
        memory="model_cpu_offload",
        vae_tiling=True,
        default_steps=30,
        max_steps=100,
        default_guidance=7.0,
        max_guidance=20.0,
        native_width=_native_edge("sdxl-base-1.0", "unet", 8),
        native_height=_native_edge("sdxl-base-1.0", "unet", 8),
        size_multiple=8,
        min_size=512,
        max_size=2048,
        seconds_per_megapixel_step=1.0,
        sampler="Euler",
        licence="CreativeML Open RAIL++-M",
    ),
    ModelProfile(
        name="sd3-medium",
        label="Stable Diffusion 3 medium",
        family="sd3",
        pipeline_class="StableDiffusion3Pipeline",
        hub_id="stabilityai/stable-diffusion-3-medium-diffusers",
        dtype="float16",
        quantization=None,
        quantize_components=(),
        memory="model_cpu_offload",
        vae_tiling=True,
        default_steps=28,
        max_steps=100,
        default_guidance=7.0,
        max_guidance=20.0,
        native_width=_native_edge("sd3-medium", "transformer", 8),
        native_height=_native_edge("sd3-medium", "transformer", 8),
        size_multiple=16,
        min_size=512,
        max_size=2048,
        seconds_per_megapixel_step=1.5,
        sampler="Euler (flow matching)",
        licence="Stability AI community licence",
    ),
)

# One per family, for tests and the offline demo (and demo mode's stand-ins for the real ones).
TINY_PROFILES: tuple[ModelProfile, ...] = (
    _tiny(
        name="tiny-sd",
        label="Tiny SD (random weights, offline demo)",
        family="sd",
        pipeline_class="StableDiffusionPipeline",
        default_steps=8,
        default_guidance=7.0,
        max_guidance=20.0,
        size_multiple=8,
        sampler="Euler",
    ),
    _tiny(
        name="tiny-sdxl",
        label="Tiny SDXL (random weights, offline demo)",
        family="sdxl",
        pipeline_class="StableDiffusionXLPipeline",
        default_steps=4,
        default_guidance=0.0,
        max_guidance=20.0,
        size_multiple=8,
        sampler="Euler",
    ),
    _tiny(
        name="tiny-flux",
        label="Tiny FLUX (random weights, offline demo)",
        family="flux",
        pipeline_class="FluxPipeline",
        default_steps=4,
        default_guidance=3.5,
        max_guidance=10.0,
        size_multiple=16,
        supports_negative_prompt=False,
        sampler="Euler (flow matching)",
        pipeline_kwargs={"max_sequence_length": 32},
    ),
    _tiny(
        name="tiny-sd3",
        label="Tiny SD3 (random weights, offline demo)",
        family="sd3",
        pipeline_class="StableDiffusion3Pipeline",
        default_steps=4,
        default_guidance=7.0,
        max_guidance=20.0,
        size_multiple=16,  # VAE factor 8 times the transformer's 2x2 patches, as SD3 medium
        sampler="Euler (flow matching)",
        pipeline_kwargs={"max_sequence_length": 32},
    ),
)

PROFILES: tuple[ModelProfile, ...] = REAL_PROFILES + TINY_PROFILES
_BY_NAME = {p.name: p for p in PROFILES}


def all_profiles() -> dict[str, ModelProfile]:
    """Every profile by name, the real ones first and the tiny offline ones last."""
    return dict(_BY_NAME)


class UnknownProfile(KeyError):
    pass


def get_profile(name: str) -> ModelProfile:
    """The profile called ``name``; ``UnknownProfile`` names the choices when there is none."""
    try:
        return _BY_NAME[name]
    except KeyError:
        choices = ", ".join(_BY_NAME)
        raise UnknownProfile(f"unknown model profile {name!r}; choose one of: {choices}") from None


def profile_choices() -> list[tuple[str, str]]:
    """(name, label) of every profile, for model fields and forms (a callable, so a new profile
    needs no migration)."""
    return [(p.name, p.label) for p in PROFILES]


def hires_size(width: int, height: int, scale: float, multiple: int) -> tuple[int, int]:
    """The hires pass's size: each edge times ``scale``, rounded down to the profile's size
    multiple (8 for SD/SDXL, 16 for FLUX and SD3), never below the first pass's edge. Plain
    data, so the web checks a request's final size before queueing with the engine's own rule."""

    def edge(value: int) -> int:
        return max(int(value * scale) // multiple * multiple, value)

    return edge(width), edge(height)


# A hires pass may go past the profile's own size limits (that is its point: SDXL Turbo's 512
# class to a 1216x640 hero), up to these.
HIRES_MAX_EDGE = 2560
HIRES_MAX_PIXELS = 4 * 1024 * 1024


# Hero images are generated at a size every model family accepts (FLUX: multiples of 16).
GENERATE_MULTIPLE = 16


def suggested_generation_size(hero_size: tuple[int, int]) -> tuple[int, int]:
    """The smallest generation size, in multiples of 16, that covers ``hero_size`` at about its aspect.

    The hero is scaled up until its tighter side reaches a multiple of 16, and the other side is
    then rounded to the nearest multiple of 16 (never below the hero): 1200x630 -> 1216x640.
    """
    m = GENERATE_MULTIPLE
    width, height = hero_size
    scale = max(_round_up(width, m) / width, _round_up(height, m) / height)
    return (
        max(_round_up(width, m), m * round(width * scale / m)),
        max(_round_up(height, m), m * round(height * scale / m)),
    )


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


# Upscaler models for the hires pass: files an operator drops into HOFFDESK_MODELS_DIR/upscalers/.
UPSCALERS_FOLDER = "upscalers"
UPSCALER_SUFFIXES = (".safetensors", ".pth")


def upscaler_files(models_dir: Path) -> list[str]:
    """The upscaler models in a models folder, by file stem (what ``hires_upscaler`` names): the
    one rule the worker's heartbeat, validation and the engine's loader share (plain files, no
    torch, no Django)."""
    folder = models_dir / UPSCALERS_FOLDER
    if not folder.is_dir():
        return []
    return sorted(
        path.stem
        for path in folder.iterdir()
        if path.suffix in UPSCALER_SUFFIXES and not path.name.startswith(".") and path.is_file()
    )


# The checkpoint file a ComfyUI server loads for each profile, named in the ComfyUI workflow our own
# PNGs carry (issue 17, item 6): the file names of the official releases, as ComfyUI's model
# folders usually hold them. HOFFDESK_COMFYUI_CHECKPOINTS overrides them (comfyui_checkpoint_table).
# The tiny random-weight models have no ComfyUI file: theirs is their family's usual release, so a
# demo candidate opens in ComfyUI with a real model of that family. FLUX and SD3 have none (see
# generation.workflows.FAITHFUL_FAMILIES: no faithful single-checkpoint graph exists for them).
COMFYUI_CHECKPOINTS: dict[str, str] = {
    "sdxl-turbo": "sd_xl_turbo_1.0_fp16.safetensors",
    "sdxl-base": "sd_xl_base_1.0.safetensors",
    "tiny-sd": "v1-5-pruned-emaonly.safetensors",
    "tiny-sdxl": "sd_xl_base_1.0.safetensors",
}


def comfyui_checkpoint_table(text: str) -> dict[str, str]:
    """The default table with ``profile=file.safetensors`` entries (comma-separated) laid over it;
    an empty file name (``sdxl-base=``) turns that profile's workflow off. ``ValueError`` names a
    malformed entry or an unknown profile, so a typo fails at start, not silently per PNG."""
    table = dict(COMFYUI_CHECKPOINTS)
    for entry in (item.strip() for item in text.split(",")):
        if not entry:
            continue
        name, sep, checkpoint = (part.strip() for part in entry.partition("="))
        if not sep:
            raise ValueError(f"{entry!r} is not profile=checkpoint-file")
        if name not in _BY_NAME:
            raise ValueError(f"unknown model profile {name!r}; choose one of: {', '.join(_BY_NAME)}")
        table[name] = checkpoint
    return table
