"""Weights quantized once (issue 18, item 2): on a card, the components bitsandbytes quantized at a
load are saved beside the models (``<models>/quantized/<profile>/<component>``) and later loads
read them as they are instead of quantizing 12 B parameters again.

bitsandbytes quantizes only on a GPU (diffusers refuses with "No GPU found" on a CPU), so these
tests run the save and the load-back on the tiny FLUX's own transformer and T5, unquantized: the
files, the classes read from ``model_index.json``, whole-or-nothing writes, and the fallback to
quantizing again. The quantized bytes themselves are untested until a GPU is lent."""

from __future__ import annotations

import logging
from pathlib import Path

import diffusers
import pytest

from generation.engine.generate import run_pipeline
from generation.engine.loader import (
    load_pipeline,
    prequantized_components,
    save_quantized_components,
    weights_source,
)
from generation.memory_plan import cpu_plan
from generation.profiles import get_profile
from tests.generation.engine_helpers import tiny_recipe

pytestmark = pytest.mark.usefixtures("fixed_threads")

NAMES = ["transformer", "text_encoder_2"]


def _pixels(pipe: object) -> bytes:
    (image,) = run_pipeline(pipe, get_profile("tiny-flux"), tiny_recipe("tiny-flux", size=64, seeds=(3,), steps=2))
    return bytes(image.tobytes())


def test_saved_components_load_back_as_their_classes_and_make_the_same_image(models_dir: Path, tmp_path: Path) -> None:
    profile = get_profile("tiny-flux")
    pipe = load_pipeline(profile, models_dir, "cpu", cpu_plan())
    folder = tmp_path / "quantized" / "tiny-flux"
    save_quantized_components(pipe, folder, NAMES)
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)  # no half-written folder beside them

    source = weights_source(profile, models_dir)
    loaded = prequantized_components(diffusers.FluxPipeline, source, folder, NAMES)
    assert {name: type(module).__name__ for name, module in loaded.items()} == {
        "transformer": "FluxTransformer2DModel",
        "text_encoder_2": "T5EncoderModel",
    }
    again = diffusers.FluxPipeline.from_pretrained(source, **loaded)
    assert _pixels(again) == _pixels(pipe)


def test_a_saved_component_that_does_not_load_is_left_out_and_quantized_again(
    models_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    profile = get_profile("tiny-flux")
    pipe = load_pipeline(profile, models_dir, "cpu", cpu_plan())
    folder = tmp_path / "quantized"
    save_quantized_components(pipe, folder, NAMES)
    for weights in (folder / "transformer").glob("*.safetensors"):
        weights.write_bytes(weights.read_bytes()[:100])  # a half-copied file
    with caplog.at_level(logging.WARNING, logger="generation.engine.loader"):
        loaded = prequantized_components(diffusers.FluxPipeline, weights_source(profile, models_dir), folder, NAMES)
    assert list(loaded) == ["text_encoder_2"]
    assert "the saved quantized transformer" in caplog.text and "quantizing again" in caplog.text
    # Saving it again replaces the broken one.
    save_quantized_components(pipe, folder, ["transformer"])
    assert set(prequantized_components(diffusers.FluxPipeline, weights_source(profile, models_dir), folder, NAMES)) == {
        "transformer",
        "text_encoder_2",
    }


def test_a_save_that_fails_is_logged_leaves_nothing_and_never_fails_the_load(
    models_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipe = load_pipeline(get_profile("tiny-flux"), models_dir, "cpu", cpu_plan())
    blocker = tmp_path / "quantized"
    blocker.write_text("a file where the folder should go")
    with caplog.at_level(logging.WARNING, logger="generation.engine.loader"):
        save_quantized_components(pipe, blocker / "tiny-flux", ["transformer"])
    assert "could not save the quantized transformer" in caplog.text
    assert blocker.is_file()


def test_on_a_cpu_nothing_is_quantized_so_nothing_is_saved(models_dir: Path) -> None:
    load_pipeline(get_profile("tiny-flux"), models_dir, "cpu", cpu_plan())
    assert not (models_dir / "quantized").exists()
