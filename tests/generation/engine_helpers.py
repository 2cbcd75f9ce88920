"""What the engine tests build their recipes and compare their images with (tiny models, in-process)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from generation.engine.generate import Recipe, generate
from generation.engine.loader import PipelineCache
from generation.profiles import get_profile


def tiny_recipe(
    profile: str,
    *,
    seeds: tuple[int, ...] = (1234, 1235),
    subseeds: tuple[int, ...] | None = None,
    strength: float = 0.0,
    size: int = 64,
    steps: int = 2,
) -> Recipe:
    """A square recipe with a fixed prompt and the profile's own guidance."""
    return Recipe(
        profile=profile,
        prompt="a lighthouse at dusk",
        negative_prompt="blurry",
        width=size,
        height=size,
        steps=steps,
        guidance=get_profile(profile).default_guidance,
        seeds=seeds,
        subseeds=subseeds,
        subseed_strength=strength,
    )


def pngs(cache: PipelineCache, recipe: Recipe) -> list[bytes]:
    return [image.png for image in generate(cache, get_profile(recipe.profile), recipe).images]


def pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)


def distance(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two images' pixel values (0-255)."""
    return float(np.abs(pixels(a) - pixels(b)).mean())
