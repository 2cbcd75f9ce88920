"""Provenance inside each candidate PNG.

Two text chunks: ``parameters``, in the AUTOMATIC1111 format that its readers (and many image
sites) understand, and ``hoffdesk``, our own JSON with everything needed to make the image
again. Neither holds run ids or times, so the same recipe always gives the same bytes.
Pillow only: no torch here, so the web can read a recipe back.
"""

from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

RECIPE_CHUNK = "hoffdesk"
PARAMETERS_CHUNK = "parameters"
# Candidates are working files; a light deflate keeps encoding far below generation time.
PNG_COMPRESS_LEVEL = 1


def model_name(recipe: dict[str, Any]) -> str:
    """The model as the ``parameters`` chunk names it: a demo stand-in says what it stands in
    for, e.g. ``tiny-flux (demo stand-in for flux-dev-nf4)``."""
    if recipe.get("stand_in_for"):
        return f"{recipe['profile']} (demo stand-in for {recipe['stand_in_for']})"
    return str(recipe["profile"])


def a1111_parameters(recipe: dict[str, Any]) -> str:
    """The recipe as AUTOMATIC1111 writes it: prompt, negative prompt, then key: value pairs."""
    lines = [recipe["prompt"]]
    if recipe.get("negative_prompt"):
        lines.append(f"Negative prompt: {recipe['negative_prompt']}")
    pairs: list[tuple[str, object]] = [
        ("Steps", recipe["steps"]),
        ("Sampler", recipe["sampler"]),
        ("CFG scale", recipe["guidance"]),
        ("Seed", recipe["seed"]),
    ]
    # Variation seeds, under AUTOMATIC1111's names; recipes from before them have neither key.
    strength = recipe.get("subseed_strength") or 0.0
    if strength > 0 and recipe.get("subseed") is not None:
        pairs += [("Variation seed", recipe["subseed"]), ("Variation seed strength", strength)]
    pairs += [
        ("Size", f"{recipe['width']}x{recipe['height']}"),
        ("Model", model_name(recipe)),
        ("Batch size", recipe["batch_size"]),
        ("Batch pos", recipe["batch_index"]),
        ("Version", f"hoffdesk-images {recipe['hoffdesk_version']}"),
    ]
    lines.append(", ".join(f"{key}: {value}" for key, value in pairs))
    return "\n".join(lines)


def encode_png(image: Image.Image, recipe: dict[str, Any]) -> bytes:
    info = PngInfo()
    info.add_text(PARAMETERS_CHUNK, a1111_parameters(recipe))
    info.add_text(RECIPE_CHUNK, json.dumps(recipe, sort_keys=True))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def read_png_text(data: bytes) -> dict[str, str]:
    with Image.open(io.BytesIO(data)) as image:
        return {str(k): str(v) for k, v in image.info.items() if isinstance(v, str)}


def read_recipe(data: bytes) -> dict[str, Any]:
    """The JSON recipe stored in a candidate PNG (``KeyError`` when the PNG has none)."""
    recipe: dict[str, Any] = json.loads(read_png_text(data)[RECIPE_CHUNK])
    return recipe


def parse_a1111_parameters(text: str) -> dict[str, str]:
    """Parse the ``parameters`` chunk the way AUTOMATIC1111's readers do."""
    lines = text.strip().split("\n")
    settings = lines[-1]
    prompt_lines: list[str] = []
    negative = ""
    for line in lines[:-1]:
        if line.startswith("Negative prompt: "):
            negative = line[len("Negative prompt: ") :]
        else:
            prompt_lines.append(line)
    result = {"prompt": "\n".join(prompt_lines), "negative_prompt": negative}
    for pair in settings.split(", "):
        key, _, value = pair.partition(": ")
        result[key] = value
    return result
