"""Variation seeds (AUTOMATIC1111's subseeds) with the tiny models: start noise, images, provenance."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from generation.engine.generate import Recipe, initial_latents, run_pipeline, slerp
from generation.engine.loader import PipelineCache, load_pipeline
from generation.engine.metadata import parse_a1111_parameters, read_png_text, read_recipe
from generation.profiles import get_profile
from tests.generation.engine_helpers import distance, pixels, pngs
from tests.generation.engine_helpers import tiny_recipe as recipe

pytestmark = pytest.mark.usefixtures("fixed_threads")
FAMILIES = ["tiny-sd", "tiny-sdxl", "tiny-flux"]


@pytest.fixture(scope="module")
def cache(models_dir: Path) -> PipelineCache:
    return PipelineCache(models_dir, device="cpu")


def test_recipe_defaults_are_plain_and_bad_variations_are_refused() -> None:
    plain = recipe("tiny-sd", seeds=(1, 2))
    assert plain.subseeds is None and plain.subseed_strength == 0.0 and not plain.has_variation
    assert not recipe("tiny-sd", seeds=(1, 2), subseeds=(3, 4), strength=0.0).has_variation
    assert recipe("tiny-sd", seeds=(1, 2), subseeds=(3, 4), strength=0.3).has_variation
    with pytest.raises(ValueError, match="2 subseeds for 1 seeds"):
        recipe("tiny-sd", seeds=(1,), subseeds=(3, 4), strength=0.3)
    with pytest.raises(ValueError, match="between 0 and 1"):
        recipe("tiny-sd", seeds=(1,), subseeds=(3,), strength=1.5)


def test_slerp_ends_and_middle() -> None:
    low = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(1))
    high = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(2))
    assert torch.equal(slerp(0.0, low, high), low)
    assert torch.allclose(slerp(1.0, low, high), high, atol=1e-6)
    middle = slerp(0.5, low, high)
    # Between nearly orthogonal vectors slerp keeps the norm, where a straight line would shrink it.
    assert abs(middle.norm().item() - (low.norm().item() + high.norm().item()) / 2) < 0.05 * low.norm().item()
    assert (0.5 * low + 0.5 * high).norm() < 0.8 * middle.norm()
    # Nearly parallel: the linear fallback, still going from low to high.
    near = low + 1e-4 * high
    assert torch.allclose(slerp(0.25, low, near), 0.75 * low + 0.25 * near)


@pytest.mark.parametrize("name", FAMILIES)
def test_initial_latents_at_strength_0_are_the_noise_the_pipeline_draws(cache: PipelineCache, name: str) -> None:
    profile = get_profile(name)
    pipe, _ = cache.get(profile)
    r = recipe(name, seeds=(5, 6, 7), subseeds=(50, 60, 70), strength=0.0, size=128)
    ours = initial_latents(pipe, profile, r)

    denoiser = pipe.unet if profile.family in ("sd", "sdxl") else pipe.transformer
    channels = denoiser.config.in_channels // (4 if profile.family == "flux" else 1)
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in r.seeds]
    args = (3, channels, 128, 128, torch.float32, torch.device("cpu"))
    drawn = pipe.prepare_latents(*args, generators)
    given = pipe.prepare_latents(*args, generators, ours)
    if profile.family == "flux":
        drawn, given = drawn[0], given[0]
    assert drawn.shape == given.shape
    assert torch.equal(drawn, given)


@pytest.mark.parametrize("name", FAMILIES)
def test_latents_path_at_strength_0_gives_the_plain_image(cache: PipelineCache, name: str) -> None:
    profile = get_profile(name)
    pipe, _ = cache.get(profile)
    r = recipe(name, seeds=(11, 12), subseeds=(21, 22), strength=0.0)
    plain = run_pipeline(pipe, profile, r)
    through_latents = run_pipeline(pipe, profile, r, own_latents=True)
    other = run_pipeline(pipe, profile, dataclasses.replace(r, seeds=(13, 14)), own_latents=True)
    for a, b, c in zip(plain, through_latents, other, strict=True):
        assert a.tobytes() == b.tobytes()
        assert a.tobytes() != c.tobytes()


def test_latents_path_keeps_the_generators_for_a_sampler_that_adds_noise_each_step(models_dir: Path) -> None:
    """Euler a (SDXL Turbo's sampler) draws fresh noise from the generators at every step, so
    the start noise must be drawn from the very generators the pipeline then gets."""
    from diffusers import EulerAncestralDiscreteScheduler

    profile = get_profile("tiny-sdxl")
    pipe = load_pipeline(profile, models_dir, "cpu")
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    r = recipe("tiny-sdxl", seeds=(3, 4), subseeds=(30, 40), strength=0.0, steps=3)
    plain = run_pipeline(pipe, profile, r)
    through_latents = run_pipeline(pipe, profile, r, own_latents=True)
    assert [i.tobytes() for i in plain] == [i.tobytes() for i in through_latents]


@pytest.mark.parametrize("name", FAMILIES)
def test_same_variation_recipe_gives_the_same_bytes_twice(cache: PipelineCache, name: str) -> None:
    r = recipe(name, seeds=(100, 101), subseeds=(200, 201), strength=0.3)
    first = pngs(cache, r)
    assert first == pngs(cache, r)
    assert first != pngs(cache, recipe(name, seeds=(100, 101)))


@pytest.mark.parametrize("name", FAMILIES)
def test_small_strength_stays_near_the_seed_and_larger_moves_away(cache: PipelineCache, name: str) -> None:
    (plain,) = pngs(cache, recipe(name, seeds=(7,)))
    (slight,) = pngs(cache, recipe(name, seeds=(7,), subseeds=(99,), strength=0.05))
    (half,) = pngs(cache, recipe(name, seeds=(7,), subseeds=(99,), strength=0.5))
    (other_seed,) = pngs(cache, recipe(name, seeds=(99,)))
    near, far = distance(plain, slight), distance(plain, half)
    assert 0 < near < far
    assert near < distance(plain, other_seed)


def test_different_subseeds_give_different_images(cache: PipelineCache) -> None:
    a = pngs(cache, recipe("tiny-sd", seeds=(7, 7), subseeds=(99, 98), strength=0.3))
    b = pngs(cache, recipe("tiny-sd", seeds=(7, 7), subseeds=(97, 96), strength=0.3))
    assert len({*a, *b}) == 4


def test_full_strength_gives_the_subseeds_own_image(cache: PipelineCache) -> None:
    # Euler (not ancestral) takes no noise after the start: the start noise alone decides.
    (full,) = pngs(cache, recipe("tiny-sd", seeds=(7,), subseeds=(99,), strength=1.0))
    (subseed_plain,) = pngs(cache, recipe("tiny-sd", seeds=(99,)))
    assert np.array_equal(pixels(full), pixels(subseed_plain))


def test_png_carries_the_variation_and_its_recipe_makes_it_again(cache: PipelineCache) -> None:
    r = recipe("tiny-sd", seeds=(42, 43), subseeds=(420, 430), strength=0.25)
    made = pngs(cache, r)
    second = made[1]
    data = read_recipe(second)
    assert data["seed"] == 43 and data["subseed"] == 430 and data["subseed_strength"] == 0.25
    assert data["subseeds"] == [420, 430]
    parameters = parse_a1111_parameters(read_png_text(second)["parameters"])
    assert parameters["Seed"] == "43"
    assert parameters["Variation seed"] == "430"
    assert parameters["Variation seed strength"] == "0.25"
    text = read_png_text(second)["parameters"]
    assert "Seed: 43, Variation seed: 430, Variation seed strength: 0.25, Size: 64x64" in text

    again = Recipe(
        profile=data["profile"],
        prompt=data["prompt"],
        negative_prompt=data["negative_prompt"],
        width=data["width"],
        height=data["height"],
        steps=data["steps"],
        guidance=data["guidance"],
        seeds=tuple(data["seeds"]),
        subseeds=tuple(data["subseeds"]),
        subseed_strength=data["subseed_strength"],
    )
    assert pngs(cache, again) == made


@pytest.mark.parametrize(
    ("subseeds", "strength"),
    [(None, 0.0), ((8,), 0.0), (None, 0.4)],
    ids=["no-subseeds", "strength-0", "strength-without-subseeds"],
)
def test_plain_recipes_carry_no_variation(
    cache: PipelineCache, subseeds: tuple[int, ...] | None, strength: float
) -> None:
    (png,) = pngs(cache, recipe("tiny-sd", seeds=(42,), subseeds=subseeds, strength=strength))
    data = read_recipe(png)
    assert data["subseed"] is None and data["subseeds"] is None and data["subseed_strength"] == 0.0
    text = read_png_text(png)["parameters"]
    assert "Variation seed" not in text
    assert png == pngs(cache, recipe("tiny-sd", seeds=(42,)))[0]
