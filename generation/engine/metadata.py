"""Provenance inside each candidate PNG.

Two text chunks: ``parameters``, in the AUTOMATIC1111 format that its readers (and many image
sites) understand, and ``hoffdesk``, our own JSON with everything needed to make the image
again. Neither holds run ids or times, so the same recipe always gives the same bytes. Where a
faithful equivalent exists, a third: ``prompt``, the ComfyUI workflow (API format) that redoes the
image, so an editor can drop a candidate into ComfyUI (``comfyui_workflow`` says when).
Pillow only: no torch here, so the web can read a recipe back.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from generation.profiles import hires_size  # noqa: F401  (torch-free, shared with validation)
from generation.workflows import Graph, workflow_for_diffusers_recipe

RECIPE_CHUNK = "hoffdesk"
PARAMETERS_CHUNK = "parameters"
# The chunk ComfyUI's SaveImage writes its API-format graph to, and its page loads a dropped PNG from.
COMFYUI_PROMPT_CHUNK = "prompt"
# Candidates are working files; a light deflate keeps encoding far below generation time.
PNG_COMPRESS_LEVEL = 1


def _quote(value: object) -> str:
    """A value as AUTOMATIC1111 writes it: JSON-quoted when it holds a comma, colon or newline."""
    text = str(value)
    if "," in text or ":" in text or "\n" in text:
        return json.dumps(text, ensure_ascii=False)
    return text


def upscaler_label(name: str) -> str:
    """The upscaler as ``parameters`` names it: AUTOMATIC1111's "Lanczos", else the file's stem."""
    return "Lanczos" if name == "lanczos" else name


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
    ]
    # Hires fix, under AUTOMATIC1111's names and in its order; absent without a second pass.
    if recipe.get("hires_scale") is not None:
        pairs += [
            ("Denoising strength", recipe["hires_denoise"]),
            ("Hires upscale", f"{recipe['hires_scale']:g}"),
            ("Hires steps", recipe["hires_steps"]),
            ("Hires upscaler", upscaler_label(recipe["hires_upscaler"])),
        ]
    pairs += [
        ("Batch size", recipe["batch_size"]),
        ("Batch pos", recipe["batch_index"]),
        ("Version", f"hoffdesk-images {recipe['hoffdesk_version']}"),
    ]
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in pairs))
    return "\n".join(lines)


def comfyui_workflow(recipe: dict[str, Any], *, family: str, checkpoint: str) -> Graph | None:
    """The ComfyUI graph that redoes one image's ``recipe`` (its own seed, batch size 1), or None
    where it would not be the same recipe:

    - no checkpoint name (the profile's entry in HOFFDESK_COMFYUI_CHECKPOINTS is empty);
    - FLUX and SD3 (``workflow_for_diffusers_recipe``: ComfyUI runs them from separate UNet, text
      encoder and VAE files whose names and shift settings our recipe does not know);
    - a hires pass: ComfyUI would need an upscale-model node and a second KSampler, and our
      second pass's step schedule (``hires_schedule``) and upscaler files do not map onto its
      denoise one for one;
    - variation seeds: ComfyUI's core nodes have no subseed slerp of start noise.
    """
    if not checkpoint or recipe.get("hires_scale") is not None or (recipe.get("subseed_strength") or 0) > 0:
        return None
    return workflow_for_diffusers_recipe(
        family=family,
        checkpoint=checkpoint,
        prompt=recipe["prompt"],
        negative_prompt=recipe["negative_prompt"],
        seed=recipe["seed"],
        steps=recipe["steps"],
        guidance=recipe["guidance"],
        width=recipe["width"],
        height=recipe["height"],
        sampler=recipe["sampler"],
    )


def encode_png(image: Image.Image, recipe: dict[str, Any], workflow: Graph | None = None) -> bytes:
    """The candidate PNG: pixels, our two recipe chunks and (``workflow`` given) ComfyUI's ``prompt``
    chunk. Every chunk is a pure function of its input, so an exact re-run is byte-identical."""
    info = PngInfo()
    info.add_text(PARAMETERS_CHUNK, a1111_parameters(recipe))
    info.add_text(RECIPE_CHUNK, json.dumps(recipe, sort_keys=True))
    if workflow is not None:
        info.add_text(COMFYUI_PROMPT_CHUNK, json.dumps(workflow))
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


# One ``key: value`` pair of the last line, as AUTOMATIC1111's own reader matches it: a value is
# JSON-quoted when it holds a comma or colon.
_A1111_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


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
    for key, value in _A1111_PAIR.findall(settings):
        result[key.strip()] = str(json.loads(value)) if value.startswith('"') else value.strip()
    return result
