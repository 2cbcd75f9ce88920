"""tiny-sd3: a tiny StableDiffusion3Pipeline, built offline and run through the same engine path."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from django.core.management import call_command
from PIL import Image

from generation.engine import tiny
from generation.engine.generate import Recipe, generate, initial_latents, run_pipeline
from generation.engine.loader import PipelineCache
from generation.engine.metadata import read_recipe
from generation.profiles import get_profile
from tests.generation.engine_helpers import pixels, pngs, tiny_recipe

NAME = "tiny-sd3"

# models_dir and fixed_threads come from tests/generation/conftest.py.
pytestmark = pytest.mark.usefixtures("fixed_threads")


@pytest.fixture(scope="module")
def cache(models_dir: Path) -> PipelineCache:
    return PipelineCache(models_dir, device="cpu")


def recipe(**fields: Any) -> Recipe:
    return tiny_recipe(NAME, **fields)


def test_it_is_built_into_its_folder_as_sd3_medium_is_laid_out(models_dir: Path, cache: PipelineCache) -> None:
    pipe, load_seconds = cache.get(get_profile(NAME))

    folder = models_dir / NAME
    assert tiny.is_built(folder) and load_seconds > 0
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusion3Pipeline"
    assert index["text_encoder"] == index["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]
    assert index["text_encoder_3"] == ["transformers", "T5EncoderModel"]
    assert index["transformer"] == ["diffusers", "SD3Transformer2DModel"]
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    assert pipe.vae.config.latent_channels == 16 and pipe.transformer.config.in_channels == 16
    assert pipe.vae_scale_factor == 8 and pipe.transformer.config.patch_size == 2
    # Small: a few MB on disk, like the other tiny models.
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 5_000_000


def test_its_positions_cover_every_size_sd3_medium_accepts(cache: PipelineCache) -> None:
    """In demo mode sd3-medium's requests run on tiny-sd3: its transformer's position table must
    reach sd3-medium's largest size (it raises past it)."""
    pipe, _ = cache.get(get_profile(NAME))
    config = pipe.transformer.config
    largest_px = config.pos_embed_max_size * config.patch_size * pipe.vae_scale_factor
    assert largest_px >= get_profile("sd3-medium").max_size
    assert get_profile(NAME).size_multiple == get_profile("sd3-medium").size_multiple == 16


def test_builds_are_deterministic(tmp_path: Path) -> None:
    a = tiny.ensure_tiny(NAME, tmp_path / "a")
    b = tiny.ensure_tiny(NAME, tmp_path / "b")
    weights = sorted(p.relative_to(a) for p in a.rglob("*.safetensors"))
    assert len(weights) == 5  # three text encoders, the transformer and the VAE
    for rel in weights:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()


def test_same_seed_same_bytes_other_seed_other_bytes(cache: PipelineCache) -> None:
    first = generate(cache, get_profile(NAME), recipe(seeds=(9, 10)))
    again = generate(cache, get_profile(NAME), recipe(seeds=(9, 10)))
    other = generate(cache, get_profile(NAME), recipe(seeds=(11, 12)))
    assert [i.png for i in first.images] == [i.png for i in again.images]
    assert first.images[0].png != other.images[0].png
    assert first.images[0].sha256 != first.images[1].sha256
    for image in first.images:
        with Image.open(io.BytesIO(image.png)) as png:
            assert png.size == (64, 64)
        assert read_recipe(image.png)["scheduler"] == "FlowMatchEulerDiscreteScheduler"


def test_the_recipe_in_its_png_makes_the_same_bytes_again(cache: PipelineCache) -> None:
    made = pngs(cache, recipe(seeds=(42, 43), subseeds=(420, 430), strength=0.25))
    data = read_recipe(made[1])
    assert data["profile"] == NAME and data["subseed"] == 430
    assert pngs(cache, Recipe.from_image(data)) == made


def test_initial_latents_at_strength_0_are_the_noise_the_pipeline_draws(cache: PipelineCache) -> None:
    profile = get_profile(NAME)
    pipe, _ = cache.get(profile)
    r = recipe(seeds=(5, 6, 7), subseeds=(50, 60, 70), strength=0.0, size=128)
    ours = initial_latents(pipe, profile, r)

    generators = [torch.Generator("cpu").manual_seed(seed) for seed in r.seeds]
    drawn = pipe.prepare_latents(3, 16, 128, 128, torch.float32, torch.device("cpu"), generators)
    assert ours.shape == drawn.shape == (3, 16, 16, 16)
    assert torch.equal(ours, drawn)


def test_latents_path_at_strength_0_gives_the_plain_image(cache: PipelineCache) -> None:
    profile = get_profile(NAME)
    pipe, _ = cache.get(profile)
    r = recipe(seeds=(11, 12), subseeds=(21, 22), strength=0.0)
    plain = run_pipeline(pipe, profile, r)
    through_latents = run_pipeline(pipe, profile, r, own_latents=True)
    assert [i.tobytes() for i in plain] == [i.tobytes() for i in through_latents]


def test_variations_repeat_exactly_and_move_away_with_strength(cache: PipelineCache) -> None:
    (plain,) = pngs(cache, recipe(seeds=(7,)))
    (slight,) = pngs(cache, recipe(seeds=(7,), subseeds=(99,), strength=0.05))
    (half,) = pngs(cache, recipe(seeds=(7,), subseeds=(99,), strength=0.5))
    assert pngs(cache, recipe(seeds=(7,), subseeds=(99,), strength=0.5)) == [half]
    near = float(np.abs(pixels(plain) - pixels(slight)).mean())
    far = float(np.abs(pixels(plain) - pixels(half)).mean())
    assert 0 < near < far


def test_full_strength_gives_the_subseeds_own_image(cache: PipelineCache) -> None:
    # Flow-matching Euler adds no noise after the start: the start noise alone decides.
    (full,) = pngs(cache, recipe(seeds=(7,), subseeds=(99,), strength=1.0))
    (subseed_plain,) = pngs(cache, recipe(seeds=(99,)))
    assert np.array_equal(pixels(full), pixels(subseed_plain))


def test_fetch_models_builds_it_locally(tmp_path: Path, settings) -> None:
    settings.HOFFDESK_MODELS_DIR = tmp_path
    out = io.StringIO()
    call_command("fetch_models", NAME, stdout=out)
    assert f"{NAME}: built locally" in out.getvalue()
    assert tiny.is_built(tmp_path / NAME)
    assert json.loads((tmp_path / NAME / "model_index.json").read_text())["_class_name"] == "StableDiffusion3Pipeline"
