"""The memory plan applied (issue 18, item 1): the loader asks the planner for a placement from the
card and turns it into diffusers' own calls; the worker records the plan's line and the peak on
the run. No CUDA here, so the decision -> calls mapping is checked on the tiny pipelines with the
CPU as the "onload" device (the hooks are the very ones a GPU gets), and the card is described by
its size (``HOFFDESK_VRAM_GIB``'s path) instead of being read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from diffusers.hooks.group_offloading import _is_group_offload_enabled

from generation import tasks
from generation.engine.generate import run_pipeline
from generation.engine.loader import (
    EngineError,
    PipelineCache,
    apply_memory_plan,
    choose_memory_plan,
    load_pipeline,
)
from generation.memory_plan import MemoryPlan, cpu_plan, plan_memory
from generation.models import GenerationRun
from generation.profiles import get_profile
from generation.services import run_submit
from tests.generation.engine_helpers import tiny_recipe

pytestmark = pytest.mark.usefixtures("fixed_threads")

HERO: dict[str, Any] = {"width": 1216, "height": 640}


def plan(strategy: str, *, t5_on_cpu: bool = False, vae_tiling: bool = False) -> MemoryPlan:
    return MemoryPlan(strategy, t5_on_cpu, vae_tiling, 0.0, strategy)


def fresh(models_dir: Path, name: str) -> object:
    """A freshly loaded tiny pipeline, not yet placed (the loader's cpu plan is a plain .to)."""
    return load_pipeline(get_profile(name), models_dir, "cpu", cpu_plan())


def images_from(pipe: object, name: str) -> list[object]:
    return run_pipeline(pipe, get_profile(name), tiny_recipe(name, seeds=(7,), steps=1))


@pytest.mark.parametrize("name", ["tiny-flux", "tiny-sdxl"])
def test_group_offload_puts_the_denoiser_and_every_other_module_under_diffusers_hooks(models_dir, name) -> None:
    pipe: object = fresh(models_dir, name)
    apply_memory_plan(pipe, plan("group_offload"), device="cpu")
    denoiser = "unet" if name == "tiny-sdxl" else "transformer"
    modules = {key: value for key, value in pipe.components.items() if hasattr(value, "parameters")}  # type: ignore[attr-defined]
    assert denoiser in modules and "vae" in modules
    assert all(_is_group_offload_enabled(module) for module in modules.values())
    assert len(images_from(pipe, name)) == 1


def test_an_fp8_plan_stores_the_denoisers_weights_in_fp8_and_still_makes_an_image(models_dir) -> None:
    """Layerwise casting on the tiny UNet: its Linear and conv weights are float8_e4m3fn at rest
    (norms stay in the compute dtype, as diffusers skips them), each layer computes in float32,
    and the pipeline still makes its image. The other components keep their dtype."""
    import torch

    pipe: object = fresh(models_dir, "tiny-sdxl")
    apply_memory_plan(pipe, MemoryPlan("cpu", False, False, 0.0, "UNet fp8", fp8=True), device="cpu")
    unet_dtypes = {p.dtype for p in pipe.unet.parameters()}  # type: ignore[attr-defined]
    assert torch.float8_e4m3fn in unet_dtypes
    assert {p.dtype for p in pipe.vae.parameters()} == {torch.float32}  # type: ignore[attr-defined]
    assert len(images_from(pipe, "tiny-sdxl")) == 1


def test_model_offload_is_diffusers_enable_model_cpu_offload(models_dir) -> None:
    pipe: object = fresh(models_dir, "tiny-flux")
    apply_memory_plan(pipe, plan("model_cpu_offload"), device="cpu")
    assert pipe._all_hooks  # type: ignore[attr-defined]
    assert str(pipe._offload_device).startswith("cpu")  # type: ignore[attr-defined]
    assert len(images_from(pipe, "tiny-flux")) == 1


def test_sequential_offload_is_diffusers_enable_sequential_cpu_offload(models_dir) -> None:
    """Only the hooks: accelerate's leaf offload cannot execute with the CPU as its "GPU" (it
    rebuilds parameters on the execution device), so running it is left to a CUDA machine."""
    pipe: object = fresh(models_dir, "tiny-sdxl")
    apply_memory_plan(pipe, plan("sequential_cpu_offload"), device="cpu")
    assert hasattr(pipe.unet, "_hf_hook") and hasattr(pipe.vae, "_hf_hook")  # type: ignore[attr-defined]


def test_t5_on_the_cpu_streams_only_the_t5_and_leaves_the_rest_placed_whole(models_dir) -> None:
    pipe: object = fresh(models_dir, "tiny-flux")
    apply_memory_plan(pipe, plan("gpu", t5_on_cpu=True), device="cpu")
    assert _is_group_offload_enabled(pipe.text_encoder_2)  # type: ignore[attr-defined]
    assert not _is_group_offload_enabled(pipe.transformer)  # type: ignore[attr-defined]
    assert not _is_group_offload_enabled(pipe.text_encoder)  # type: ignore[attr-defined]
    assert len(images_from(pipe, "tiny-flux")) == 1


def test_the_vae_is_tiled_when_the_plan_for_that_size_says_so_and_not_below_it(models_dir) -> None:
    flux = get_profile("flux-dev-nf4")
    big = plan_memory(flux, card_gib=8, width=2048, height=2048)
    small = plan_memory(flux, card_gib=24, **HERO)
    assert big.vae_tiling and not small.vae_tiling
    for decided, tiled in ((big, True), (small, False)):
        pipe: object = fresh(models_dir, "tiny-flux")
        apply_memory_plan(pipe, decided, device="cpu")
        assert pipe.vae.use_tiling is tiled  # type: ignore[attr-defined]


def test_the_plan_comes_from_the_card_size_or_is_cpu_without_cuda() -> None:
    flux, tiny = get_profile("flux-dev-nf4"), get_profile("tiny-flux")
    on_12 = choose_memory_plan(flux, device="cuda", card=12, headroom_gib=1, **HERO)
    assert on_12.label == "transformer nf4 on GPU, T5 on CPU" and on_12.peak_gib <= 11
    assert choose_memory_plan(flux, device="cpu", card=None, headroom_gib=1, **HERO).label == "CPU"
    assert choose_memory_plan(tiny, device="cuda", card=12, headroom_gib=1, **HERO).label == "everything on GPU"
    with pytest.raises(EngineError, match="HOFFDESK_VRAM_GIB"):
        choose_memory_plan(flux, device="cuda", card=2, headroom_gib=1, **HERO)


def test_the_cache_on_a_cpu_applies_nothing_and_says_cpu(models_dir) -> None:
    cache = PipelineCache(models_dir, device="cpu", vram_gib=12)
    pipe, _ = cache.get(get_profile("tiny-sd"), width=64, height=64)
    assert cache.plan_label("tiny-sd") == "CPU"
    assert not getattr(pipe, "_all_hooks", None)
    assert not _is_group_offload_enabled(pipe.unet)


@pytest.mark.django_db(transaction=True)
def test_the_worker_records_the_plan_line_and_no_peak_on_a_cpu(article, settings, models_dir) -> None:
    settings.HOFFDESK_MODELS_DIR = models_dir
    tasks._cache = None
    run = run_submit(article=article, model="tiny-sd", width=64, height=64, steps=1, count=1, seed=3)
    assert tasks.run_generate(run.pk) == "succeeded", GenerationRun.objects.get(pk=run.pk).error
    run.refresh_from_db()
    assert (run.memory_plan, run.peak_vram_bytes) == ("CPU", None)


@pytest.mark.django_db
def test_the_run_card_shows_the_plan_line(article, admin_client) -> None:
    run = run_submit(article=article, model="tiny-sd", width=64, height=64, steps=1, count=1, seed=3)
    GenerationRun.objects.filter(pk=run.pk).update(memory_plan="transformer nf4 on GPU, T5 on CPU")
    page = admin_client.get(f"/articles/{article.slug}/").content.decode()
    assert "Memory: transformer nf4 on GPU, T5 on CPU" in page
