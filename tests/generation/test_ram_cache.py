"""The RAM cache (``HOFFDESK_RAM_CACHE_GIB``): an evicted big pipeline is parked in RAM, and asking
for it again is a copy back, not a load from disk. Tiny models made "big" (``one_at_a_time``, one
pipeline at a time as on a 12 GB card) and slow to load (``load_delay``, the switching benchmark's
documented sleep) stand in for FLUX and SDXL, on a CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.engine.generate import generate
from generation.engine.loader import GIB, PipelineCache, pipeline_bytes
from generation.profiles import get_profile
from tests.generation.engine_helpers import tiny_recipe

pytestmark = pytest.mark.usefixtures("fixed_threads")

DELAY = 0.6  # seconds each load from disk sleeps; a copy from RAM never does


def _cache(models_dir: Path, ram_cache_gib: float) -> PipelineCache:
    return PipelineCache(models_dir, device="cpu", load_delay=DELAY, one_at_a_time=True, ram_cache_gib=ram_cache_gib)


def test_switching_back_to_a_parked_pipeline_is_a_copy_not_a_load(models_dir: Path) -> None:
    cache = _cache(models_dir, ram_cache_gib=1.0)
    sd, sdxl = get_profile("tiny-sd"), get_profile("tiny-sdxl")
    first, first_seconds = cache.get(sd)
    _, other_seconds = cache.get(sdxl)
    assert cache.loaded() == ["tiny-sdxl"] and cache.parked() == ["tiny-sd"]
    again, again_seconds = cache.get(sd)

    assert first_seconds >= DELAY and other_seconds >= DELAY
    assert again is first  # the same weights, never read from disk again
    assert again_seconds < DELAY
    assert cache.loaded() == ["tiny-sd"] and cache.parked() == ["tiny-sdxl"]


def test_a_parked_pipeline_makes_the_same_bytes_as_before_it_was_parked(models_dir: Path) -> None:
    cache = _cache(models_dir, ram_cache_gib=1.0)
    sd = get_profile("tiny-sd")
    before = generate(cache, sd, tiny_recipe("tiny-sd", size=64, seeds=(5,)))
    cache.get(get_profile("tiny-sdxl"))
    after = generate(cache, sd, tiny_recipe("tiny-sd", size=64, seeds=(5,)))
    assert after.load_seconds < DELAY
    assert [i.png for i in after.images] == [i.png for i in before.images]


def test_without_a_ram_cache_switching_back_loads_from_disk_again(models_dir: Path) -> None:
    cache = _cache(models_dir, ram_cache_gib=0.0)
    sd, sdxl = get_profile("tiny-sd"), get_profile("tiny-sdxl")
    first, _ = cache.get(sd)
    cache.get(sdxl)
    assert cache.parked() == []
    again, seconds = cache.get(sd)
    assert again is not first
    assert seconds >= DELAY


def test_a_pipeline_larger_than_the_ram_cache_is_dropped_not_parked(models_dir: Path) -> None:
    sd = get_profile("tiny-sd")
    probe = _cache(models_dir, ram_cache_gib=0.0)
    size = pipeline_bytes(probe.get(sd)[0])
    cache = _cache(models_dir, ram_cache_gib=(size - 1) / GIB)
    cache.get(sd)
    cache.get(get_profile("tiny-sdxl"))
    assert cache.parked() == []
    assert cache.get(sd)[1] >= DELAY


def test_the_least_recently_parked_pipeline_leaves_when_the_ram_cache_is_full(models_dir: Path) -> None:
    sd, sdxl, flux = get_profile("tiny-sd"), get_profile("tiny-sdxl"), get_profile("tiny-flux")
    probe = _cache(models_dir, ram_cache_gib=0.0)
    sizes = {p.name: pipeline_bytes(probe.get(p)[0]) for p in (sd, sdxl)}
    # Room for either of the two, not both.
    cache = _cache(models_dir, ram_cache_gib=(max(sizes.values()) + min(sizes.values()) - 1) / GIB)
    cache.get(sd)
    cache.get(sdxl)  # parks tiny-sd
    cache.get(flux)  # parks tiny-sdxl; tiny-sd, parked first, leaves to make room
    assert cache.parked() == ["tiny-sdxl"]
    assert cache.get(sdxl)[1] < DELAY
    assert cache.get(sd)[1] >= DELAY
