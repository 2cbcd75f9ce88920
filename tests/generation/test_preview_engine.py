"""Live previews on the engine side: the families' linear latent-to-RGB maps, FLUX unpacking,
small JPEGs, and the step callback handing a run's latents to whoever asked for previews."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from generation.engine import previews
from generation.engine.generate import generate
from generation.engine.loader import PipelineCache
from generation.profiles import get_profile
from tests.generation.engine_helpers import tiny_recipe

pytestmark = pytest.mark.usefixtures("fixed_threads")


def one_channel_on(channels: int, which: int, value: float = 1.0, size: int = 4) -> torch.Tensor:
    latents = torch.zeros(1, channels, size, size)
    latents[:, which] = value
    return latents


def test_the_sd15_factors_map_a_first_channel_latent_to_its_published_colour() -> None:
    # ComfyUI's SD15 row for latent channel 1: (0.3512, 0.2297, 0.3227), shown as (v + 1) / 2.
    rgb = previews.latent_rgb(one_channel_on(4, 0), "sd")
    assert rgb.shape == (1, 4, 4, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0, 0].tolist()) == (172, 157, 169)


def test_the_sdxl_factors_add_their_bias() -> None:
    # A zero latent is the bias alone: (0.1084, -0.0175, -0.0011) -> (141, 125, 127).
    rgb = previews.latent_rgb(torch.zeros(1, 4, 2, 2), "sdxl")
    assert tuple(rgb[0, 1, 1].tolist()) == (141, 125, 127)


def test_the_flux_and_sd3_factors_take_sixteen_channels() -> None:
    # FLUX's last channel row (-0.1262, -0.0982, -0.0778) plus its bias (-0.0329, -0.0718, -0.0851).
    flux = previews.latent_rgb(one_channel_on(16, 15), "flux")
    assert tuple(flux[0, 0, 0].tolist()) == (107, 106, 107)
    sd3 = previews.latent_rgb(one_channel_on(16, 2), "sd3")  # (0.1994, 0.0927, 0.0458) + bias
    assert tuple(sd3[0, 0, 0].tolist()) == (183, 167, 158)


def test_a_latent_of_no_known_shape_shows_its_first_three_channels_normalised() -> None:
    latents = torch.zeros(1, 4, 2, 2)
    latents[0, 0, 0, 0] = 5.0  # the red channel's brightest pixel
    latents[0, 0, 1, 1] = -5.0  # and its darkest
    rgb = previews.latent_rgb(latents, "flux")  # the tiny FLUX: 4 channels, not FLUX's 16
    assert rgb[0, 0, 0, 0] == 255 and rgb[0, 1, 1, 0] == 0


def test_flux_latents_are_unpacked_to_the_images_latent_grid() -> None:
    from diffusers import FluxPipeline

    grid = torch.randn(2, 16, 80, 152)  # 1216x640 under the VAE's factor 8
    packed = FluxPipeline._pack_latents(grid, 2, 16, 80, 152)
    assert packed.shape == (2, 40 * 76, 64)
    unpacked = previews.unpack_flux(packed, width=1216, height=640, vae_scale_factor=8)
    assert unpacked.shape == (2, 16, 80, 152)
    assert torch.equal(unpacked, grid)


def test_a_hero_sized_preview_is_a_small_jpeg_per_candidate() -> None:
    latents = torch.randn(3, 4, 80, 152)  # three SDXL candidates at 1216x640
    jpegs = previews.preview_jpegs(latents, family="sdxl", width=1216, height=640, vae_scale_factor=8)
    assert len(jpegs) == 3
    for data in jpegs:
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "JPEG" and max(image.size) <= 256
            assert image.size == (256, 135)
        assert len(data) < 16_000


class Collector:
    """What a worker's progress reporter is to the engine: a step callback that also takes previews."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.steps: list[int] = []
        self.previews: list[tuple[int, list[bytes]]] = []

    def __call__(self, step: int, total: int) -> None:
        self.steps.append(step)

    def preview_due(self, step: int) -> bool:
        return step % self.every == 0

    def preview(self, images: list[bytes], step: int) -> None:
        self.previews.append((step, images))


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-flux"])
def test_the_step_callback_hands_each_due_steps_previews_to_the_caller(models_dir: Path, name: str) -> None:
    collector = Collector(every=2)
    recipe = tiny_recipe(name, size=64, steps=4)
    generate(PipelineCache(models_dir, device="cpu"), get_profile(name), recipe, collector)

    assert collector.steps == [1, 2, 3, 4]
    assert [step for step, _ in collector.previews] == [2, 4]
    first, last = collector.previews[0][1], collector.previews[1][1]
    assert len(first) == len(recipe.seeds) and first != last
    with Image.open(io.BytesIO(first[0])) as image:
        assert image.format == "JPEG"


def test_a_plain_step_callback_gets_no_previews_and_the_run_goes_on(models_dir: Path) -> None:
    steps: list[int] = []
    generate(
        PipelineCache(models_dir, device="cpu"),
        get_profile("tiny-sd"),
        tiny_recipe("tiny-sd", steps=2),
        lambda step, total: steps.append(step),
    )
    assert steps == [1, 2]


def test_an_installed_taesd_decoder_makes_the_previews_instead_of_the_factors(tmp_path: Path) -> None:
    from diffusers import AutoencoderTiny

    torch.manual_seed(3)
    narrow = {"encoder_block_out_channels": (8,) * 4, "decoder_block_out_channels": (8,) * 4}
    blocks = {"num_encoder_blocks": (1,) * 4, "num_decoder_blocks": (1,) * 4}
    decoder_model: Any = AutoencoderTiny(**narrow, **blocks, latent_channels=4)
    decoder_model.save_pretrained(tmp_path / "taesd")
    latents = torch.randn(1, 4, 8, 8)
    assert previews.tiny_decoder(tmp_path, "sdxl", device="cpu", dtype=torch.float32) is None  # no taesdxl
    decoder = previews.tiny_decoder(tmp_path, "sd", device="cpu", dtype=torch.float32)
    assert decoder is not None

    (jpeg,) = previews.preview_jpegs(latents, family="sd", width=64, height=64, vae_scale_factor=8, decoder=decoder)
    (linear,) = previews.preview_jpegs(latents, family="sd", width=64, height=64, vae_scale_factor=8)
    expected = previews.decoded_rgb(latents, decoder)[0].astype(int)
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.size == (64, 64)
        shown = np.asarray(image.convert("RGB"), dtype=int)
    assert np.abs(shown - expected).mean() < 8  # the decoder's picture, give or take the JPEG
    assert jpeg != linear
