"""Hires fix in the engine: native size first, enlarged, then an image-to-image pass on the same
weights; exact re-runs, progress over both passes, cancel in either, AUTOMATIC1111 provenance."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from generation.engine import tiny
from generation.engine.generate import Cancelled, Recipe, generate, hires_pipeline
from generation.engine.loader import EngineError, PipelineCache
from generation.engine.metadata import read_png_text, read_recipe
from generation.profiles import get_profile
from tests.generation.engine_helpers import tiny_recipe

pytestmark = pytest.mark.usefixtures("fixed_threads")


def hires(profile: str, *, size: int = 64, seeds: tuple[int, ...] = (5, 6), **fields: Any) -> Recipe:
    values: dict[str, Any] = {"hires_scale": 1.5, "hires_upscaler": "lanczos", "hires_steps": 2, "hires_denoise": 0.5}
    values.update(fields)
    return dataclasses.replace(tiny_recipe(profile, size=size, seeds=seeds), **values)


def size_of(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as image:
        return image.size


# AUTOMATIC1111's infotext, parsed here by its own documented rules (modules/infotext_utils.py,
# parse_generation_parameters): the last line holds `key: value` pairs separated by commas, a
# value that holds a comma or colon is JSON-quoted. Independent of our metadata module.
A1111_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def a1111_pairs(text: str) -> dict[str, str]:
    last = text.strip().split("\n")[-1]
    pairs = {}
    for key, value in A1111_PAIR.findall(last):
        pairs[key.strip()] = json.loads(value) if value.startswith('"') else value.strip()
    return pairs


def test_a_hires_run_ends_at_the_enlarged_size_and_an_exact_rerun_is_byte_identical(models_dir: Path) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    recipe = hires("tiny-sd")
    first = generate(cache, get_profile("tiny-sd"), recipe)
    again = generate(cache, get_profile("tiny-sd"), recipe)
    assert [i.png for i in first.images] == [i.png for i in again.images]
    assert [size_of(i.png) for i in first.images] == [(96, 96), (96, 96)]
    assert [(i.width, i.height) for i in first.images] == [(96, 96), (96, 96)]
    assert first.images[0].png != first.images[1].png
    # The second pass changed the enlarged image: it is not a plain Lanczos resize of the first.
    plain = generate(cache, get_profile("tiny-sd"), tiny_recipe("tiny-sd", size=64, seeds=(5, 6)))
    with Image.open(io.BytesIO(plain.images[0].png)) as small, Image.open(io.BytesIO(first.images[0].png)) as big:
        resized = small.convert("RGB").resize((96, 96), Image.Resampling.LANCZOS)
        assert resized.tobytes() != big.convert("RGB").tobytes()


def test_flux_sizes_round_down_to_a_multiple_of_16(models_dir: Path) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    # 64 x 1.4 = 89.6: SD would take 88, FLUX 80.
    result = generate(cache, get_profile("tiny-flux"), hires("tiny-flux", seeds=(3,), hires_scale=1.4))
    assert size_of(result.images[0].png) == (80, 80)
    data = read_recipe(result.images[0].png)
    assert (data["width"], data["height"], data["hires_width"], data["hires_height"]) == (64, 64, 80, 80)


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl", "tiny-flux", "tiny-sd3"])
@pytest.mark.parametrize("denoise", [0.55, 0.3])
def test_progress_counts_both_passes_with_exactly_the_hires_steps(models_dir: Path, name: str, denoise: float) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    seen: list[tuple[int, int]] = []
    recipe = hires(name, seeds=(1,), size=32 if name != "tiny-sd3" else 64, hires_steps=3, hires_denoise=denoise)
    generate(cache, get_profile(name), recipe, lambda step, total: seen.append((step, total)))
    # The first pass's 2 steps, then the 3 hires steps that actually ran (AUTOMATIC1111's meaning
    # of "Hires steps"), whatever rounding the pipeline's strength x steps does.
    assert seen == [(step, 5) for step in range(1, 6)]


@pytest.mark.parametrize("stop_at", [1, 3])
def test_cancel_stops_either_pass_and_returns_no_image(models_dir: Path, stop_at: int) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    seen: list[int] = []

    def on_step(step: int, total: int) -> None:
        seen.append(step)
        if step == stop_at:
            raise Cancelled

    with pytest.raises(Cancelled):
        generate(cache, get_profile("tiny-sd"), hires("tiny-sd", hires_steps=3), on_step)
    assert seen == list(range(1, stop_at + 1))


def test_the_png_says_hires_in_a1111_keys_and_the_json_recipe_makes_it_again(models_dir: Path) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    recipe = hires("tiny-sd", seeds=(42,), hires_scale=1.4, hires_steps=2, hires_denoise=0.5)
    png = generate(cache, get_profile("tiny-sd"), recipe).images[0].png
    pairs = a1111_pairs(read_png_text(png)["parameters"])
    assert pairs["Hires upscale"] == "1.4"
    assert pairs["Hires steps"] == "2"
    assert pairs["Hires upscaler"] == "Lanczos"
    assert pairs["Denoising strength"] == "0.5"
    assert pairs["Size"] == "64x64"  # AUTOMATIC1111's Size is the first pass's
    assert pairs["Seed"] == "42" and pairs["Steps"] == "2"

    data = read_recipe(png)
    assert data["hires_scale"] == 1.4 and data["hires_upscaler"] == "lanczos"
    assert data["hires_steps"] == 2 and data["hires_denoise"] == 0.5
    assert (data["hires_width"], data["hires_height"]) == (88, 88)
    back = Recipe.from_image(data)
    assert back == recipe
    assert generate(cache, get_profile("tiny-sd"), back).images[0].png == png


def test_a_run_without_hires_writes_no_hires_keys(models_dir: Path) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    png = generate(cache, get_profile("tiny-sd"), tiny_recipe("tiny-sd", seeds=(42,))).images[0].png
    assert not [k for k in read_recipe(png) if k.startswith("hires")]
    assert "Hires" not in read_png_text(png)["parameters"]
    assert Recipe.from_image(read_recipe(png)).hires_scale is None


def test_an_upscaler_model_enlarges_before_the_second_pass(models_dir: Path) -> None:
    tiny.ensure_tiny_upscaler(models_dir)
    cache = PipelineCache(models_dir, device="cpu")
    recipe = hires("tiny-sdxl", seeds=(8,), hires_upscaler="tiny-esrgan-x4", hires_scale=2.0)
    result = generate(cache, get_profile("tiny-sdxl"), recipe)
    png = result.images[0].png
    assert size_of(png) == (128, 128)
    assert a1111_pairs(read_png_text(png)["parameters"])["Hires upscaler"] == "tiny-esrgan-x4"
    lanczos = generate(cache, get_profile("tiny-sdxl"), dataclasses.replace(recipe, hires_upscaler="lanczos"))
    assert lanczos.images[0].png != png
    assert generate(cache, get_profile("tiny-sdxl"), recipe).images[0].png == png


def test_an_upscaler_that_is_not_there_is_refused_by_name_never_replaced_by_lanczos(models_dir: Path) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    with pytest.raises(EngineError, match=r"No upscaler named '4x-missing' in .*upscalers"):
        generate(cache, get_profile("tiny-sd"), hires("tiny-sd", hires_upscaler="4x-missing"))


def test_the_hires_pass_reuses_the_loaded_weights(models_dir: Path) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    for name in ("tiny-sd", "tiny-sdxl", "tiny-flux", "tiny-sd3"):
        pipe, _ = cache.get(get_profile(name))
        second = hires_pipeline(pipe)
        assert type(second).__name__.endswith("Img2ImgPipeline")
        for component in ("vae", "text_encoder", "unet" if name in ("tiny-sd", "tiny-sdxl") else "transformer"):
            assert getattr(second, component) is getattr(pipe, component)
        # Its own scheduler: the second pass's timesteps never disturb the first pass's.
        assert second.scheduler is not pipe.scheduler


def test_a_source_image_takes_the_hires_pass_alone_and_matches_the_full_run(models_dir: Path) -> None:
    """The "Make hero size" run: a candidate's image and seed, the hires pass only."""
    cache = PipelineCache(models_dir, device="cpu")
    recipe = hires("tiny-sd", seeds=(11, 12))
    small = generate(cache, get_profile("tiny-sd"), tiny_recipe("tiny-sd", size=64, seeds=(11, 12)))
    seen: list[tuple[int, int]] = []
    upscaled = generate(
        cache,
        get_profile("tiny-sd"),
        recipe,
        lambda step, total: seen.append((step, total)),
        source_images=[image.png for image in small.images],
    )
    assert seen == [(1, 2), (2, 2)]
    full = generate(cache, get_profile("tiny-sd"), recipe)
    assert [i.png for i in upscaled.images] == [i.png for i in full.images]


def test_a_source_image_of_another_size_is_refused(models_dir: Path) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    buffer = io.BytesIO()
    Image.new("RGB", (40, 64)).save(buffer, format="PNG")
    with pytest.raises(EngineError, match="source image 0 is 40x64, the recipe says 64x64"):
        generate(cache, get_profile("tiny-sd"), hires("tiny-sd", seeds=(1,)), source_images=[buffer.getvalue()])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hires_scale": 0.5}, "hires_scale must be between 1 and 4"),
        ({"hires_steps": 0}, "hires_steps must be at least 1"),
        ({"hires_denoise": 0.0}, "hires_denoise must be above 0 and at most 1"),
        ({"hires_denoise": 1.5}, "hires_denoise must be above 0 and at most 1"),
        ({"hires_upscaler": ""}, "hires_upscaler must name an upscaler"),
    ],
)
def test_bad_hires_fields_are_refused_naming_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        hires("tiny-sd", **fields)
