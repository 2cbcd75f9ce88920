"""Draft mode in the engine: diffusers' cache acceleration on the tiny FLUX transformer, on for
the draft's first pass only and always off again (the pipeline stays warm between runs), and
recorded in each PNG's recipe so a draft can be made again byte for byte."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from generation.engine.generate import Cancelled, Recipe, generate
from generation.engine.loader import EngineError, PipelineCache
from generation.engine.metadata import read_recipe
from generation.profiles import get_profile
from tests.generation.engine_helpers import pngs, tiny_recipe

pytestmark = pytest.mark.usefixtures("fixed_threads")

# A threshold so high that First Block Cache reuses the cached residual at every step after the
# first: on random tiny weights a realistic threshold never skips, and the test must see it act.
ALWAYS_SKIP = {"kind": "FirstBlockCache", "threshold": 100.0}


def draft_of(recipe: Recipe, cache: dict[str, Any] = ALWAYS_SKIP) -> Recipe:
    return dataclasses.replace(recipe, draft=True, draft_cache=dict(cache))


def test_a_draft_runs_with_the_cache_on_and_leaves_the_warm_pipeline_without_it(models_dir: Path) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    full = tiny_recipe("tiny-flux", steps=4)
    before = pngs(cache, full)
    transformer = cache.get(get_profile("tiny-flux"))[0].transformer
    seen: list[bool] = []

    def watch(done: int, total: int) -> None:
        seen.append(transformer.is_cache_enabled)

    generate(cache, get_profile("tiny-flux"), draft_of(full), watch)

    assert seen == [True] * 4
    assert not transformer.is_cache_enabled
    assert pngs(cache, draft_of(full)) != before  # the cache really skipped blocks
    assert pngs(cache, full) == before  # a later full run runs as if no draft had been made


def test_a_cancelled_draft_still_turns_the_cache_off(models_dir: Path) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    transformer = cache.get(get_profile("tiny-flux"))[0].transformer

    def stop(done: int, total: int) -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        generate(cache, get_profile("tiny-flux"), draft_of(tiny_recipe("tiny-flux", steps=4)), stop)

    assert not transformer.is_cache_enabled


def test_a_drafts_png_records_the_cache_and_its_settings_and_a_full_runs_has_none(models_dir: Path) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    full = tiny_recipe("tiny-flux", steps=4)

    draft = read_recipe(pngs(cache, draft_of(full, {"kind": "FirstBlockCache", "threshold": 0.08}))[0])
    plain = read_recipe(pngs(cache, full)[0])

    assert draft["draft"] is True
    assert draft["draft_cache"] == {"kind": "FirstBlockCache", "threshold": 0.08}
    assert "draft" not in plain and "draft_cache" not in plain


def test_a_draft_made_again_from_its_png_recipe_is_byte_identical(models_dir: Path) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    first = pngs(cache, draft_of(tiny_recipe("tiny-flux", steps=4)))

    again = pngs(cache, Recipe.from_image(read_recipe(first[0])))

    assert again == first


def test_a_unet_model_has_no_transformer_cache_and_says_so(models_dir: Path) -> None:
    cache = PipelineCache(models_dir, device="cpu")

    with pytest.raises(EngineError, match="no transformer cache"):
        generate(cache, get_profile("tiny-sd"), draft_of(tiny_recipe("tiny-sd")))
