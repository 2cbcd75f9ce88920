"""Where a real model's parts go on a given card: the fastest placement whose computed peak fits.

Plain arithmetic over plain data (no torch, no Django), so the worker can plan before it loads
anything, the web can show the plan, and the tests check it on a CPU. The inputs are the profile
(dtype, quantization, family), the exact parameter counts vendored in
``generation/architectures/param_counts.json`` (checked against a meta-device build of the vendored
configs by the tests), the card's size and the headroom to leave free.

Weights are exact up to the storage format; activations are an *estimate* (constants below, each
with its reason), to be corrected by the peak the worker measures (``torch.cuda.max_memory_reserved``).
A placement is accepted when its computed peak is at most ``card - headroom``; a card too small even
for sequential offload is refused before loading (``MemoryPlanError``), because a plan that does not
fit would only fail minutes later, out of memory, half way through a run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

from generation.profiles import ARCHITECTURES_DIR, ModelProfile

GIB = 1024**3

# Which vendored architecture folder each real profile is built from.
ARCHITECTURE_FOLDERS: dict[str, str] = {
    "flux-dev-nf4": "flux1-dev",
    "flux-schnell": "flux1-schnell",
    "sdxl-turbo": "sdxl-turbo",
    "sdxl-base": "sdxl-base-1.0",
    "sd3-medium": "sd3-medium",
}

DTYPE_BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0}

# bitsandbytes nf4 as the loader configures it (no double quantization, blocksize 64): 4 bits per
# weight plus one fp32 absmax per 64 weights = 0.5 + 4/64 = 0.5625 bytes per parameter. It replaces
# nn.Linear layers only; a T5's shared token embedding (vocab_size x d_model) stays in the compute
# dtype, and is counted so. The few non-Linear parameters of a transformer (norm scales, biases) are
# well under 1 % and are counted at the nf4 rate.
NF4_BYTES_PER_PARAM = 0.5 + 4 / 64

# fp8 storage (diffusers ``enable_layerwise_casting``, float8_e4m3fn, upcast one layer at a time to
# the compute dtype): one byte per weight, except the layers diffusers keeps in the compute dtype
# (norms, patch and position embeddings). Those are under 1 % of a UNet's or a transformer's
# parameters; 2 % is counted at the compute dtype's size, so the estimate errs large. Only for a
# denoiser that is not already quantized (nf4 is smaller still).
FP8_KEPT_FRACTION = 0.02

# Group offloading at block level (diffusers ``apply_group_offloading``, one block per group, CUDA
# streams): the GPU holds the modules outside the top-level block lists for the whole forward, the
# block running and the next one being prefetched. Per vendored denoiser: (largest block, parameters
# outside the block lists), from a meta-device build (tests/generation/test_memory_plan.py checks).
DENOISER_BLOCKS: dict[str, tuple[int, int]] = {
    "flux1-dev": (339_831_296, 64_124_992),
    "flux1-schnell": (339_831_296, 53_895_232),
    "sd3-medium": (84_980_736, 19_476_544),
    "sdxl-base-1.0": (1_206_568_960, 420_437_444),
    "sdxl-turbo": (1_206_568_960, 420_437_444),
}

# Activation estimates (bytes = factor x batch x tokens x width x element size). A denoiser block
# at inference keeps about this many tensors of its width alive at once: the residual stream, its
# norm, q/k/v, the attention output and the 4x-wide MLP hidden state and its activation (attention
# itself goes through SDPA, which does not hold the tokens x tokens score matrix). A UNet is
# counted at its first (widest-in-tokens) level, and its skip connections fit within the factor.
DENOISER_ACTIVATION_FACTOR = 24
# The VAE decoder's largest tensors are at full resolution with block_out_channels[1] channels
# (the upsampled input of the last up block): input, GroupNorm output, conv output and the conv's
# workspace are about four of them at once.
VAE_DECODE_FACTOR = 4
# The CUDA context, cuBLAS workspace and allocator slack: held whatever the plan.
RUNTIME_OVERHEAD_GIB = 0.5
# Text tokens the transformer sees beside the image: FLUX takes max_sequence_length T5 tokens, SD3
# 77 CLIP tokens + its T5 tokens (diffusers' default max_sequence_length 256).
DEFAULT_T5_TOKENS = {"flux": 512, "sd3": 256}

STRATEGIES = ("gpu", "model_cpu_offload", "group_offload", "sequential_cpu_offload")
# What a worker without CUDA runs: everything on the CPU, nothing to plan or apply.
CPU_STRATEGY = "cpu"


class MemoryPlanError(ValueError):
    """No placement fits the card; the message says how much the smallest one needs."""


@dataclass(frozen=True)
class MemoryPlan:
    """The placement chosen for one run, and the peak it was computed to reach (GiB).

    ``strategy`` is one of ``STRATEGIES``; ``t5_on_cpu`` keeps the T5 encoder on the CPU for the
    whole run; ``fp8`` stores the denoiser's weights in fp8 (layerwise casting); ``label`` is the
    one line the run card shows.
    """

    strategy: str
    t5_on_cpu: bool
    vae_tiling: bool
    peak_gib: float
    label: str
    fp8: bool = False


@dataclass(frozen=True)
class Component:
    """One part of a pipeline: its name in diffusers, role and weight bytes on the GPU."""

    name: str
    role: str  # "denoiser", "t5", "clip", "vae"
    params: int
    weight_bytes: float


@cache
def _param_counts() -> dict[str, dict[str, int]]:
    """Exact parameter counts per folder and component name; the JSON's keys carry a description
    after the name ("text_encoder_2 (T5EncoderModel, ...)"), which is dropped here."""
    with open(ARCHITECTURES_DIR / "param_counts.json", encoding="utf-8") as fh:
        data = json.load(fh)
    return {
        folder: {key.split(" ")[0]: int(entry["params"]) for key, entry in components.items()}
        for folder, components in data.items()
        if not folder.startswith("_")
    }


@cache
def _config(folder: str, component: str) -> dict[str, object]:
    with open(ARCHITECTURES_DIR / folder / f"{component}.json", encoding="utf-8") as fh:
        data: dict[str, object] = json.load(fh)
    return data


def _int(config: dict[str, object], key: str) -> int:
    value = config[key]
    assert isinstance(value, int), f"{key} is {value!r}"
    return value


def _ints(config: dict[str, object], key: str) -> list[int]:
    value = config[key]
    assert isinstance(value, list) and all(isinstance(v, int) for v in value), f"{key} is {value!r}"
    return value


def architecture_folder(profile: ModelProfile) -> str:
    """The vendored architecture of a real profile; a tiny one has none (it runs on the CPU)."""
    try:
        return ARCHITECTURE_FOLDERS[profile.name]
    except KeyError:
        raise MemoryPlanError(f"profile {profile.name!r} has no vendored architecture to plan from") from None


def _role(folder: str, name: str) -> str:
    if name in ("transformer", "unet"):
        return "denoiser"
    if name == "vae":
        return "vae"
    return "t5" if _config(folder, name).get("model_type") == "t5" else "clip"


def fp8_applies(profile: ModelProfile) -> bool:
    """Whether fp8 storage would shrink this profile's denoiser: a 16-bit one, not quantized."""
    denoiser = "unet" if profile.family == "sdxl" else "transformer"
    quantized = profile.quantization == "nf4" and denoiser in profile.quantize_components
    return not quantized and profile.dtype in ("float16", "bfloat16")


def components(profile: ModelProfile, *, fp8: bool = False) -> list[Component]:
    """Each component with the bytes its weights take on the GPU in the profile's storage dtype
    (``fp8``: the denoiser's in fp8, see ``FP8_KEPT_FRACTION``)."""
    folder = architecture_folder(profile)
    element = DTYPE_BYTES[profile.dtype]
    parts = []
    for name, params in _param_counts()[folder].items():
        role = _role(folder, name)
        if fp8 and role == "denoiser" and fp8_applies(profile):
            weight_bytes = params * ((1 - FP8_KEPT_FRACTION) * 1.0 + FP8_KEPT_FRACTION * element)
        elif profile.quantization == "nf4" and name in profile.quantize_components:
            kept = 0  # parameters bitsandbytes leaves in the compute dtype
            if role == "t5":
                config = _config(folder, name)
                kept = _int(config, "vocab_size") * _int(config, "d_model")
            weight_bytes = (params - kept) * NF4_BYTES_PER_PARAM + kept * element
        elif role == "vae" and _vae_upcast(profile, folder):
            weight_bytes = params * 4.0
        else:
            weight_bytes = params * element
        parts.append(Component(name=name, role=role, params=params, weight_bytes=weight_bytes))
    return parts


def _vae_upcast(profile: ModelProfile, folder: str) -> bool:
    """The SDXL pipeline decodes in float32 when the VAE's config asks (``force_upcast``) and the
    pipeline runs in float16; the FLUX and SD3 pipelines never upcast."""
    return (
        profile.family == "sdxl" and profile.dtype == "float16" and _config(folder, "vae").get("force_upcast") is True
    )


def denoiser_activation_bytes(profile: ModelProfile, width: int, height: int, images: int = 1) -> float:
    """Estimated activations of one denoiser step at ``width`` x ``height`` (see the factor above).

    Batch: ``images`` (the engine runs all seeds in one call), doubled under classifier-free
    guidance (SDXL and SD3 with guidance above 1; FLUX is guidance-distilled and never doubles).
    """
    folder = architecture_folder(profile)
    batch = images * (2 if profile.family != "flux" and profile.default_guidance > 1.0 else 1)
    if profile.family == "sdxl":
        config = _config(folder, "unet")
        tokens = (width // 8) * (height // 8)
        channels = _ints(config, "block_out_channels")[0]
    else:
        config = _config(folder, "transformer")
        patch = 8 * _int(config, "patch_size") * (2 if profile.family == "flux" else 1)  # FLUX packs 2x2 latents
        t5_tokens = profile.pipeline_kwargs.get("max_sequence_length", DEFAULT_T5_TOKENS[profile.family])
        assert isinstance(t5_tokens, int)
        text = t5_tokens + (77 if profile.family == "sd3" else 0)
        tokens = (width // patch) * (height // patch) + text
        channels = _int(config, "num_attention_heads") * _int(config, "attention_head_dim")
    element = DTYPE_BYTES[profile.dtype]
    return float(DENOISER_ACTIVATION_FACTOR * batch * tokens * channels * element)


def vae_decode_bytes(profile: ModelProfile, width: int, height: int, *, tiled: bool, images: int = 1) -> float:
    """Estimated activations of decoding ``images`` images (see the factor above). Tiled, diffusers
    decodes tiles of the VAE's ``sample_size`` pixels at most (1024 for these VAEs) one at a time, so
    the peak is one tile's (the whole batch goes through each tile together)."""
    folder = architecture_folder(profile)
    config = _config(folder, "vae")
    if tiled:
        tile = _int(config, "sample_size")
        width, height = min(width, tile), min(height, tile)
    element = 4.0 if _vae_upcast(profile, folder) else DTYPE_BYTES[profile.dtype]
    channels = _ints(config, "block_out_channels")[1]
    return float(VAE_DECODE_FACTOR * images * width * height * channels * element)


def _peak_bytes(
    profile: ModelProfile,
    width: int,
    height: int,
    images: int,
    strategy: str,
    *,
    t5_on_cpu: bool,
    tiled: bool,
    fp8: bool = False,
) -> float:
    """The computed peak of one run: the largest phase (encode, denoise, decode) plus overhead."""
    parts = components(profile, fp8=fp8)
    by_role = {role: [c for c in parts if c.role == role] for role in ("denoiser", "t5", "clip", "vae")}
    denoiser, vae = by_role["denoiser"][0], by_role["vae"][0]
    encoders = by_role["clip"] + ([] if t5_on_cpu else by_role["t5"])
    denoise_act = denoiser_activation_bytes(profile, width, height, images)
    decode_act = vae_decode_bytes(profile, width, height, tiled=tiled, images=images)
    # Text encoding activations (at most 512 tokens) are small beside these and are left out.
    if strategy == "gpu":
        resident = sum(c.weight_bytes for c in [denoiser, vae, *encoders])
        peak = resident + max(denoise_act, decode_act)
    elif strategy == "model_cpu_offload":
        # One component on the GPU at a time, moved there when its phase starts.
        encode = max((c.weight_bytes for c in encoders), default=0.0)
        peak = max(encode, denoiser.weight_bytes + denoise_act, vae.weight_bytes + decode_act)
    else:
        largest, outside = DENOISER_BLOCKS[architecture_folder(profile)]
        per_param = denoiser.weight_bytes / denoiser.params
        # Group offload: the modules outside the block lists, the running block and the prefetched
        # one. Sequential offload moves one leaf at a time: one block is an upper bound for it.
        blocks = outside + 2 * largest if strategy == "group_offload" else largest
        on_gpu = min(blocks, denoiser.params) * per_param
        # The text encoders and the VAE are offloaded the same way; their own largest phase is
        # bounded by the model-offload figure, which for the encoders is small beside the denoiser.
        encode = 0.0 if strategy == "sequential_cpu_offload" else max((c.weight_bytes for c in encoders), default=0.0)
        decode_weights = 0.0 if strategy == "sequential_cpu_offload" else vae.weight_bytes
        peak = max(encode, on_gpu + denoise_act, decode_weights + decode_act)
    return peak + RUNTIME_OVERHEAD_GIB * GIB


def _label(profile: ModelProfile, strategy: str, *, t5_on_cpu: bool, tiled: bool, fp8: bool = False) -> str:
    """The run card's line: "everything on GPU", "transformer nf4 on GPU, T5 on CPU, VAE tiled",
    "UNet fp8 on GPU"..."""
    denoiser = "UNet" if profile.family == "sdxl" else "transformer"
    if strategy == "gpu" and fp8:
        head = f"{denoiser} fp8 on GPU"
    elif strategy == "gpu" and not t5_on_cpu:
        head = "everything on GPU"
    elif strategy == "gpu":
        quantized = profile.quantization and denoiser.lower() in profile.quantize_components
        head = f"{denoiser} {profile.quantization} on GPU" if quantized else f"{denoiser} on GPU"
    else:
        head = {
            "model_cpu_offload": "model offload",
            "group_offload": "group offload",
            "sequential_cpu_offload": "sequential offload",
        }[strategy]
    fp8_note = [f"{denoiser} fp8"] if fp8 and strategy != "gpu" else []
    parts = [head] + fp8_note + (["T5 on CPU"] if t5_on_cpu else []) + (["VAE tiled"] if tiled else [])
    return ", ".join(parts)


def plan_memory(
    profile: ModelProfile,
    *,
    card_gib: float,
    width: int,
    height: int,
    headroom_gib: float = 1.0,
    images: int = 1,
    fp8_storage: bool = False,
) -> MemoryPlan:
    """The fastest placement of ``profile`` whose computed peak fits in ``card_gib - headroom_gib``.

    Tried in this order, each first with the T5 encoder on the GPU, then on the CPU (it only
    encodes the prompt once, so the CPU costs seconds, where moving the transformer costs every
    run), and each first with a whole VAE decode, then tiled: everything on the GPU; model CPU
    offload; group offload (block level, CUDA streams); sequential offload. With ``fp8_storage``
    (``HOFFDESK_FP8_STORAGE`` on a card that has it) and a 16-bit denoiser, each placement is
    tried in its own precision first and then with the denoiser's weights stored in fp8, before
    the next, slower placement: a cast per layer costs less than moving weights every step, and
    the precision is kept whenever it fits. ``MemoryPlanError`` when none fits, naming what the
    smallest placement needs.
    """
    budget = (card_gib - headroom_gib) * GIB
    has_t5 = any(c.role == "t5" for c in components(profile))
    smallest = float("inf")
    for strategy in STRATEGIES:
        for fp8 in (False, True) if fp8_storage and fp8_applies(profile) else (False,):
            for t5_on_cpu in (False, True) if has_t5 else (False,):
                if t5_on_cpu and strategy == "model_cpu_offload":
                    # diffusers refuses model offload beside a group-offloaded module, which is how
                    # the loader keeps a T5 on the CPU; group offload (next) is the placement for it.
                    continue
                for tiled in (False, True):
                    peak = _peak_bytes(
                        profile, width, height, images, strategy, t5_on_cpu=t5_on_cpu, tiled=tiled, fp8=fp8
                    )
                    smallest = min(smallest, peak)
                    if peak <= budget:
                        label = _label(profile, strategy, t5_on_cpu=t5_on_cpu, tiled=tiled, fp8=fp8)
                        return MemoryPlan(strategy, t5_on_cpu, tiled, round(peak / GIB, 2), label, fp8)
    raise MemoryPlanError(
        f"{profile.label} at {width}x{height} needs at least {smallest / GIB:.2f} GiB of GPU memory "
        f"(sequential offload); this card has {card_gib:g} GiB with {headroom_gib:g} GiB kept free"
    )


def cpu_plan() -> MemoryPlan:
    """A worker without CUDA: the whole pipeline on the CPU, nothing applied (label "CPU")."""
    return MemoryPlan(CPU_STRATEGY, t5_on_cpu=False, vae_tiling=False, peak_gib=0.0, label="CPU")


def small_model_plan() -> MemoryPlan:
    """A tiny random-weight model on a GPU: a few MB, so everything goes on the card unplanned."""
    return MemoryPlan("gpu", t5_on_cpu=False, vae_tiling=False, peak_gib=0.0, label="everything on GPU")
