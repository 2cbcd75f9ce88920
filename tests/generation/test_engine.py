"""The engine in-process with the tiny models: loading, seeds, cache, cancel, provenance."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from generation.engine import tiny
from generation.engine.generate import Cancelled, Recipe, generate
from generation.engine.loader import ModelUnavailable, PipelineCache
from generation.engine.metadata import parse_a1111_parameters, read_png_text, read_recipe
from generation.profiles import get_profile
from tests.generation.engine_helpers import tiny_recipe

pytestmark = pytest.mark.usefixtures("fixed_threads")


def recipe(profile: str, size: int = 128, **fields: Any) -> Recipe:
    return tiny_recipe(profile, size=size, **fields)


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sdxl", "tiny-flux"])
def test_each_tiny_family_is_built_into_its_folder_and_generates_from_it(models_dir: Path, name: str) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    result = generate(cache, get_profile(name), recipe(name))

    folder = models_dir / name
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == get_profile(name).pipeline_class
    assert tiny.is_built(folder)
    assert result.load_seconds > 0
    assert [image.seed for image in result.images] == [1234, 1235]
    for image in result.images:
        with Image.open(io.BytesIO(image.png)) as png:
            assert png.size == (128, 128)
        assert read_recipe(image.png)["profile"] == name


def test_tiny_builds_are_deterministic(tmp_path: Path) -> None:
    a = tiny.ensure_tiny("tiny-sd", tmp_path / "a")
    b = tiny.ensure_tiny("tiny-sd", tmp_path / "b")
    weights = sorted(p.relative_to(a) for p in a.rglob("*.safetensors"))
    assert weights
    for rel in weights:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()


def test_same_seed_same_bytes_other_seed_other_bytes(models_dir: Path) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    profile = get_profile("tiny-sd")
    first = generate(cache, profile, recipe("tiny-sd", seeds=(9, 10)))
    again = generate(cache, profile, recipe("tiny-sd", seeds=(9, 10)))
    other = generate(cache, profile, recipe("tiny-sd", seeds=(11, 12)))
    assert [i.png for i in first.images] == [i.png for i in again.images]
    assert first.images[0].png != other.images[0].png
    assert first.images[0].sha256 != first.images[1].sha256


def test_warm_cache_loads_once_and_a_big_profile_evicts_the_other_big_one(models_dir: Path, tmp_path: Path) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    profile = get_profile("tiny-sd")
    _, first_load = cache.get(profile)
    _, second_load = cache.get(profile)
    assert first_load > 0 and second_load == 0.0

    # Two "big" profiles backed by local folders (a real profile loads from its folder the same way).
    big_a = dataclasses.replace(get_profile("sdxl-turbo"), name="big-a", tiny=False)
    big_b = dataclasses.replace(get_profile("sdxl-turbo"), name="big-b", tiny=False)
    for name, source in (("big-a", "tiny-sdxl"), ("big-b", "tiny-sdxl")):
        tiny.ensure_tiny(source, models_dir / source)
        link = models_dir / name
        if not link.exists():
            link.symlink_to(models_dir / source)
    cache.get(big_a)
    assert set(cache.loaded()) == {"tiny-sd", "big-a"}
    cache.get(big_b)
    assert set(cache.loaded()) == {"tiny-sd", "big-b"}


def test_progress_is_reported_per_step_and_cancel_stops_at_the_next_step(models_dir: Path) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    seen: list[tuple[int, int]] = []

    def on_step(step: int, total: int) -> None:
        seen.append((step, total))
        if step == 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        generate(cache, get_profile("tiny-sd"), recipe("tiny-sd", steps=50), on_step)
    assert seen == [(1, 50), (2, 50), (3, 50)]


def test_png_carries_a1111_parameters_and_a_json_recipe(models_dir: Path) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    result = generate(cache, get_profile("tiny-sd"), recipe("tiny-sd", seeds=(42,), steps=3))
    png = result.images[0].png
    parameters = parse_a1111_parameters(read_png_text(png)["parameters"])
    assert parameters["prompt"] == "a lighthouse at dusk"
    assert parameters["negative_prompt"] == "blurry"
    assert parameters["Seed"] == "42" and parameters["Steps"] == "3" and parameters["Size"] == "128x128"
    assert parameters["Model"] == "tiny-sd"
    data = read_recipe(png)
    assert data["seed"] == 42 and data["batch_size"] == 1 and data["scheduler"] == "EulerDiscreteScheduler"
    # The recipe alone makes the same image again.
    again = generate(
        cache,
        get_profile(data["profile"]),
        Recipe(
            profile=data["profile"],
            prompt=data["prompt"],
            negative_prompt=data["negative_prompt"],
            width=data["width"],
            height=data["height"],
            steps=data["steps"],
            guidance=data["guidance"],
            seeds=tuple(data["seeds"]),
        ),
    )
    assert again.images[0].png == png


def test_a_real_profile_without_weights_says_how_to_get_them(models_dir: Path) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    with pytest.raises(ModelUnavailable, match="fetch_models flux-dev-nf4"):
        cache.get(get_profile("flux-dev-nf4"))


class _PipeThatRunsOutOfMemory:
    """Fault injection: a CPU machine cannot run out of GPU memory, so this stands in for a
    pipeline whose call raises what torch raises on a full card."""

    scheduler = None

    def __call__(self, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_gpu_memory_fails_with_advice_an_editor_can_act_on(models_dir: Path) -> None:
    from generation.engine.loader import EngineError

    cache = PipelineCache(models_dir, device="cpu")
    profile = get_profile("tiny-sd")
    cache.put(profile, _PipeThatRunsOutOfMemory())
    with pytest.raises(EngineError, match=r"Out of GPU memory making 2 images at 128x128 with tiny-sd\. Try fewer"):
        generate(cache, profile, recipe("tiny-sd"))


def test_a_real_profile_on_a_worker_without_cuda_is_refused_before_loading(models_dir: Path) -> None:
    from generation.engine.loader import EngineError

    cache = PipelineCache(models_dir, device="cpu")
    with pytest.raises(EngineError, match="flux-dev-nf4 needs an NVIDIA GPU with CUDA"):
        generate(cache, get_profile("flux-dev-nf4"), recipe("flux-dev-nf4", size=1024))
    assert cache.loaded() == []
