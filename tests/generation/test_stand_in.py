"""Demo stand-ins in the engine: a PNG says plainly which tiny model made it and for what;
profiles are plain data, the real ones first."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generation.demo import STAND_INS
from generation.engine.generate import Recipe, generate
from generation.engine.loader import PipelineCache
from generation.engine.metadata import a1111_parameters, parse_a1111_parameters, read_png_text, read_recipe
from generation.profiles import REAL_PROFILES, TINY_PROFILES, all_profiles, get_profile, profile_choices

# models_dir and fixed_threads come from tests/generation/conftest.py.
pytestmark = pytest.mark.usefixtures("fixed_threads")


@pytest.fixture(scope="module")
def cache(models_dir: Path) -> PipelineCache:
    return PipelineCache(models_dir, device="cpu")


def flux_stand_in(seeds: tuple[int, ...] = (42, 43)) -> Recipe:
    """What the worker makes when flux-dev-nf4 is asked for in demo mode."""
    return Recipe(
        profile="tiny-flux",
        prompt="a lighthouse at dusk",
        negative_prompt="",
        width=64,
        height=64,
        steps=2,
        guidance=3.5,
        seeds=seeds,
        stand_in_for="flux-dev-nf4",
    )


def pngs(cache: PipelineCache, r: Recipe) -> list[bytes]:
    return [image.png for image in generate(cache, get_profile(r.profile), r).images]


def test_a_stand_in_png_names_the_tiny_model_and_the_real_one_it_stands_in_for(cache: PipelineCache) -> None:
    png = pngs(cache, flux_stand_in())[1]

    data = read_recipe(png)
    assert data["profile"] == "tiny-flux" and data["stand_in_for"] == "flux-dev-nf4"
    assert data["pipeline"] == "FluxPipeline"
    text = read_png_text(png)["parameters"]
    assert "Model: tiny-flux (demo stand-in for flux-dev-nf4)," in text
    assert parse_a1111_parameters(text)["Model"] == "tiny-flux (demo stand-in for flux-dev-nf4)"


def test_the_recipe_of_a_stand_in_png_makes_the_same_bytes_again(cache: PipelineCache) -> None:
    made = pngs(cache, flux_stand_in())
    again = Recipe.from_image(read_recipe(made[0]))
    assert again == flux_stand_in()
    assert pngs(cache, again) == made


def test_the_stand_in_note_changes_the_text_not_the_pixels(cache: PipelineCache) -> None:
    noted = pngs(cache, flux_stand_in())
    plain = pngs(cache, dataclasses.replace(flux_stand_in(), stand_in_for=None))
    for a, b in zip(noted, plain, strict=True):
        assert a != b
        with Image.open(io.BytesIO(a)) as ia, Image.open(io.BytesIO(b)) as ib:
            assert np.array_equal(np.asarray(ia), np.asarray(ib))


def test_a_run_of_the_profile_asked_for_has_no_stand_in_note(cache: PipelineCache) -> None:
    (png,) = pngs(cache, dataclasses.replace(flux_stand_in(seeds=(42,)), stand_in_for=None))
    data = read_recipe(png)
    assert "stand_in_for" not in data
    assert parse_a1111_parameters(read_png_text(png)["parameters"])["Model"] == "tiny-flux"
    assert Recipe.from_image(data).stand_in_for is None


def test_parameters_of_a_recipe_from_before_demo_mode_still_read() -> None:
    old = {
        "prompt": "p",
        "steps": 2,
        "sampler": "Euler",
        "guidance": 7.0,
        "seed": 1,
        "width": 64,
        "height": 64,
        "profile": "tiny-sd",
        "batch_size": 1,
        "batch_index": 0,
        "hoffdesk_version": "0.1.0",
    }
    assert "Model: tiny-sd, Batch size: 1" in a1111_parameters(old)


@pytest.mark.parametrize("family", sorted(STAND_INS))
def test_every_real_family_has_a_tiny_stand_in_with_the_same_pipeline(family: str) -> None:
    stand_in = get_profile(STAND_INS[family])
    assert stand_in.tiny and not stand_in.is_real and stand_in.family == family
    for real in (p for p in REAL_PROFILES if p.family == family):
        assert real.is_real and real.pipeline_class == stand_in.pipeline_class
        # Sizes the real profile accepts must be sizes the stand-in's pipeline accepts.
        assert real.size_multiple % stand_in.size_multiple == 0
    assert {p.family for p in REAL_PROFILES} <= set(STAND_INS)


def test_profiles_are_data_with_the_real_ones_first() -> None:
    names = list(all_profiles())
    assert names == [p.name for p in REAL_PROFILES + TINY_PROFILES]
    assert names[:5] == ["flux-dev-nf4", "flux-schnell", "sdxl-turbo", "sdxl-base", "sd3-medium"]
    assert names[5:] == ["tiny-sd", "tiny-sdxl", "tiny-flux", "tiny-sd3"]
    assert all(p.is_real for p in REAL_PROFILES) and not any(p.is_real for p in TINY_PROFILES)
    assert profile_choices() == [(p.name, p.label) for p in all_profiles().values()]
    # Callers get their own dict: changing it changes no one else's profiles.
    all_profiles().pop("tiny-sd")
    assert "tiny-sd" in all_profiles()


def test_tiny_profiles_share_their_offline_settings() -> None:
    for profile in TINY_PROFILES:
        assert profile.hub_id is None and profile.dtype == "float32" and profile.quantization is None
        assert (profile.native_width, profile.min_size, profile.max_size) == (512, 64, 1024)


def test_the_real_profile_asked_for_is_refused_on_a_cpu_worker_but_its_stand_in_runs(cache: PipelineCache) -> None:
    from generation.engine.loader import EngineError

    with pytest.raises(EngineError, match="flux-dev-nf4 needs an NVIDIA GPU"):
        generate(cache, get_profile("flux-dev-nf4"), dataclasses.replace(flux_stand_in(), profile="flux-dev-nf4"))
    assert len(pngs(cache, flux_stand_in())) == 2
