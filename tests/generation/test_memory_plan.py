"""The memory planner (issue 18, item 1): for each real profile and card, the fastest placement
whose computed peak fits under the card less its headroom, with the line the run card shows. Plain
arithmetic on the vendored configs and parameter counts; one test builds the real architectures on
torch's ``meta`` device (no memory, no weights) so the vendored counts cannot drift from them."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from generation.memory_plan import (
    ARCHITECTURE_FOLDERS,
    DENOISER_BLOCKS,
    GIB,
    NF4_BYTES_PER_PARAM,
    STRATEGIES,
    MemoryPlanError,
    components,
    plan_memory,
)
from generation.profiles import ARCHITECTURES_DIR, REAL_PROFILES, TINY_PROFILES, get_profile
from tests.conftest import ROOT

HERO: dict[str, Any] = {"width": 1216, "height": 640}


def test_flux_nf4_on_a_12_gib_card_fits_under_11_gib_with_t5_on_the_cpu() -> None:
    plan = plan_memory(get_profile("flux-dev-nf4"), card_gib=12, headroom_gib=1, **HERO)
    assert plan.peak_gib <= 11
    assert (plan.strategy, plan.t5_on_cpu, plan.vae_tiling) == ("gpu", True, False)
    assert plan.label == "transformer nf4 on GPU, T5 on CPU"


def test_flux_nf4_on_a_24_gib_card_keeps_everything_on_the_gpu() -> None:
    plan = plan_memory(get_profile("flux-dev-nf4"), card_gib=24, **HERO)
    assert (plan.strategy, plan.t5_on_cpu, plan.vae_tiling) == ("gpu", False, False)
    assert plan.label == "everything on GPU"
    assert plan.peak_gib <= 23


def test_sdxl_base_on_an_8_gib_card_uses_model_offload() -> None:
    for size in (HERO, {"width": 1024, "height": 1024}):
        plan = plan_memory(get_profile("sdxl-base"), card_gib=8, **size)
        assert plan.strategy == "model_cpu_offload" and plan.label == "model offload", size
        assert plan.peak_gib <= 7


def test_with_fp8_storage_sdxl_base_on_a_10_gib_card_stays_on_the_gpu_in_fp8() -> None:
    """HOFFDESK_FP8_STORAGE on a 10 GB card (an RTX 3080): the UNet's 2.57 B weights in one byte
    each (4.8 -> 2.4 GiB) make "everything on the GPU" fit where fp16 needs model offload; the
    label says fp8. (On 8 GiB it still cannot: SDXL's float32 VAE decode alone is 2.5-4 GiB.)"""
    for size in (HERO, {"width": 1024, "height": 1024}):
        fp16 = plan_memory(get_profile("sdxl-base"), card_gib=10, **size)
        assert fp16.strategy == "model_cpu_offload", size
        plan = plan_memory(get_profile("sdxl-base"), card_gib=10, fp8_storage=True, **size)
        assert (plan.strategy, plan.fp8) == ("gpu", True), size
        assert plan.label.startswith("UNet fp8 on GPU")
        assert plan.peak_gib <= 9


def test_fp8_storage_is_only_used_when_the_precision_does_not_fit() -> None:
    """A card big enough in fp16 keeps fp16; nf4 FLUX is smaller than fp8 already and never gets it."""
    sdxl = plan_memory(get_profile("sdxl-base"), card_gib=24, fp8_storage=True, **HERO)
    assert (sdxl.strategy, sdxl.fp8, sdxl.label) == ("gpu", False, "everything on GPU")
    for card in (8, 12, 24):
        with_fp8 = plan_memory(get_profile("flux-dev-nf4"), card_gib=card, fp8_storage=True, **HERO)
        assert with_fp8 == plan_memory(get_profile("flux-dev-nf4"), card_gib=card, **HERO)
        assert not with_fp8.fp8


def test_fp8_weights_are_one_byte_each_but_the_kept_layers() -> None:
    sdxl = get_profile("sdxl-base")
    unet16 = next(c for c in components(sdxl) if c.role == "denoiser")
    unet8 = next(c for c in components(sdxl, fp8=True) if c.role == "denoiser")
    assert unet8.params == unet16.params
    assert unet16.params <= unet8.weight_bytes <= unet16.params * 1.02 + 1
    others = [c.weight_bytes for c in components(sdxl, fp8=True) if c.role != "denoiser"]
    assert others == [c.weight_bytes for c in components(sdxl) if c.role != "denoiser"]


def test_sd3_medium_on_a_12_gib_card_keeps_its_fp16_t5_on_the_cpu() -> None:
    """SD3's T5 is not quantized (8.9 GiB in fp16): it cannot sit beside the transformer."""
    plan = plan_memory(get_profile("sd3-medium"), card_gib=12, **HERO)
    assert plan.label == "transformer on GPU, T5 on CPU"
    assert plan.peak_gib <= 11


def test_the_vae_is_tiled_above_the_size_whose_decode_would_not_fit() -> None:
    flux = get_profile("flux-dev-nf4")
    assert not plan_memory(flux, card_gib=12, width=1024, height=1024).vae_tiling
    big = plan_memory(flux, card_gib=12, width=2048, height=2048)
    assert big.label == "transformer nf4 on GPU, T5 on CPU, VAE tiled"
    assert big.peak_gib <= 11


def test_smaller_cards_fall_back_to_group_then_sequential_offload() -> None:
    assert plan_memory(get_profile("flux-dev-nf4"), card_gib=8, **HERO).label == "group offload"
    tight = plan_memory(get_profile("sdxl-turbo"), card_gib=4, **HERO)
    assert tight.label == "sequential offload, VAE tiled" and tight.peak_gib <= 3


def test_a_card_too_small_for_anything_is_refused_with_what_it_needs() -> None:
    """Refused before loading, not planned: a plan over budget would fail out of memory minutes
    into the run, with a less clear message."""
    with pytest.raises(MemoryPlanError, match=r"needs at least 1\.75 GiB .* this card has 2 GiB with 1 GiB kept free"):
        plan_memory(get_profile("flux-dev-nf4"), card_gib=2, **HERO)


def test_every_plan_fits_its_budget_and_a_bigger_card_is_never_slower() -> None:
    for profile in REAL_PROFILES:
        for width, height in ((1216, 640), (1024, 1024), (2048, 2048)):
            previous = len(STRATEGIES)
            for card in (4, 6, 8, 12, 16, 24, 48):
                try:
                    plan = plan_memory(profile, card_gib=card, width=width, height=height)
                except MemoryPlanError:
                    continue
                assert plan.peak_gib <= card - 1, (profile.name, card, width, height)
                rank = STRATEGIES.index(plan.strategy)
                assert rank <= previous, (profile.name, card, width, height)
                previous = rank


def test_nf4_weights_are_4_bits_plus_a_float32_scale_per_64_and_the_t5_embedding_stays_bf16() -> None:
    parts = {c.name: c for c in components(get_profile("flux-dev-nf4"))}
    assert parts["transformer"].weight_bytes == 11_901_408_320 * (0.5 + 4 / 64) == 11_901_408_320 * NF4_BYTES_PER_PARAM
    embedding = 32128 * 4096
    assert parts["text_encoder_2"].weight_bytes == (4_762_310_656 - embedding) * 0.5625 + embedding * 2
    assert parts["vae"].weight_bytes == 83_819_683 * 2  # bf16, never quantized
    sdxl = {c.name: c for c in components(get_profile("sdxl-base"))}
    assert sdxl["unet"].weight_bytes == 2_567_463_684 * 2
    assert sdxl["vae"].weight_bytes == 83_653_863 * 4  # the SDXL pipeline upcasts its VAE to fp32
    assert round(parts["transformer"].weight_bytes / GIB, 2) == 6.23


def test_a_tiny_profile_has_nothing_to_plan_from() -> None:
    with pytest.raises(MemoryPlanError, match="has no vendored architecture"):
        plan_memory(TINY_PROFILES[0], card_gib=12, **HERO)


def test_the_planner_imports_neither_torch_nor_django() -> None:
    code = "import sys, generation.memory_plan; print(sorted({'torch', 'django', 'diffusers'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_the_vendored_counts_match_a_meta_device_build_of_the_configs() -> None:
    """Every component of every vendored architecture, built on ``meta``: its parameter count is the
    JSON's, and the denoiser's block sizes are the planner's group-offload constants."""
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel, SD3Transformer2DModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    def config(folder: str, name: str) -> dict[str, Any]:
        data = json.loads((ARCHITECTURES_DIR / folder / f"{name}.json").read_text())
        return {k: v for k, v in data.items() if not k.startswith("_")}

    def build(folder: str, name: str) -> torch.nn.Module:
        cfg = config(folder, name)
        if name == "vae":
            return AutoencoderKL.from_config(cfg)
        if name == "unet":
            return UNet2DConditionModel.from_config(cfg)
        if name == "transformer":
            cls = FluxTransformer2DModel if folder.startswith("flux") else SD3Transformer2DModel
            return cls.from_config(cfg)
        if cfg["model_type"] == "t5":
            return T5EncoderModel(T5Config(**cfg))
        projection = "CLIPTextModelWithProjection" in cfg.get("architectures", [])
        return (CLIPTextModelWithProjection if projection else CLIPTextModel)(CLIPTextConfig(**cfg))

    counts = json.loads((ARCHITECTURES_DIR / "param_counts.json").read_text())
    assert set(ARCHITECTURE_FOLDERS.values()) == {k for k in counts if not k.startswith("_")}
    for folder in ARCHITECTURE_FOLDERS.values():
        for key, entry in counts[folder].items():
            name = key.split(" ")[0]
            with torch.device("meta"):
                model = build(folder, name)
            assert sum(p.numel() for p in model.parameters()) == entry["params"], (folder, name)
            if name in ("transformer", "unet"):
                blocks = [
                    sum(p.numel() for p in block.parameters())
                    for child in model.children()
                    if isinstance(child, torch.nn.ModuleList)
                    for block in child
                ]
                assert DENOISER_BLOCKS[folder] == (max(blocks), entry["params"] - sum(blocks)), folder
            del model
