"""Interop the other way (issue 17, item 6): our own diffusers-made PNGs carry the ComfyUI workflow
that redoes them, as a ``prompt`` text chunk, so an editor can drop a candidate into ComfyUI.

``comfyui`` is the stand-in server of tests/comfyui_server.py: it stands in for a ComfyUI box on
another machine (or a real ComfyUI when ``HOFFDESK_TEST_COMFYUI_URL`` is set) and validates a
graph as ComfyUI does (node types, required inputs, the checkpoint it has).
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from gallery.renditions import renditions_make
from generation import tasks
from generation.comfyui import ComfyUIClient
from generation.engine.generate import Recipe, generate
from generation.engine.loader import PipelineCache
from generation.engine.metadata import COMFYUI_PROMPT_CHUNK, read_png_text
from generation.models import GenerationRun
from generation.profiles import COMFYUI_CHECKPOINTS, comfyui_checkpoint_table, get_profile
from generation.services import run_submit
from tests.comfyui_server import ComfyUITarget
from tests.generation.engine_helpers import tiny_recipe

pytestmark = pytest.mark.usefixtures("fixed_threads")


def one_png(models_dir: Path, recipe: Recipe, checkpoint: str | None) -> bytes:
    cache = PipelineCache(models_dir, device="cpu")
    return generate(cache, get_profile(recipe.profile), recipe, comfyui_checkpoint=checkpoint).images[0].png


def post_prompt(url: str, graph: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST /prompt as ComfyUI's own page does: the status and the JSON answer."""
    request = urllib.request.Request(
        f"{url}/prompt",
        data=json.dumps({"prompt": graph, "client_id": "interop-test"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_an_sd_png_carries_a_comfyui_workflow_the_server_accepts_with_a_checkpoint_it_has(
    models_dir: Path, comfyui: ComfyUITarget
) -> None:
    client = ComfyUIClient(comfyui.url)
    assert comfyui.checkpoint in client.checkpoints()
    recipe = tiny_recipe("tiny-sd", seeds=(4321,), size=64)

    png = one_png(models_dir, recipe, comfyui.checkpoint)
    graph = json.loads(read_png_text(png)[COMFYUI_PROMPT_CHUNK])

    loaders = [node for node in graph.values() if node["class_type"] == "CheckpointLoaderSimple"]
    assert [node["inputs"]["ckpt_name"] for node in loaders] == [comfyui.checkpoint]
    sampler = next(node["inputs"] for node in graph.values() if node["class_type"] == "KSampler")
    assert (sampler["seed"], sampler["steps"]) == (4321, recipe.steps)
    status, answer = post_prompt(comfyui.url, graph)
    assert status == 200, answer
    assert answer["node_errors"] == {}
    # The chunk is deterministic: an exact re-run is byte-identical.
    assert one_png(models_dir, recipe, comfyui.checkpoint) == png
    deadline = time.monotonic() + 120  # let the prompt finish, so the shared server is idle again
    while client.history(answer["prompt_id"]) is None and time.monotonic() < deadline:
        time.sleep(0.05)


def test_each_candidate_of_a_batch_carries_its_own_seed_alone(models_dir: Path) -> None:
    cache = PipelineCache(models_dir, device="cpu")
    recipe = tiny_recipe("tiny-sdxl", seeds=(7, 8), size=64)
    images = generate(cache, get_profile("tiny-sdxl"), recipe, comfyui_checkpoint="sdxl.safetensors").images

    for image in images:
        graph = json.loads(read_png_text(image.png)[COMFYUI_PROMPT_CHUNK])
        assert graph["5"]["inputs"]["seed"] == image.seed
        assert graph["4"]["inputs"] == {"width": 64, "height": 64, "batch_size": 1}


@pytest.mark.parametrize("name", ["tiny-flux", "tiny-sd3"])
def test_flux_and_sd3_pngs_carry_no_comfyui_workflow(models_dir: Path, name: str) -> None:
    png = one_png(models_dir, tiny_recipe(name, seeds=(1,), size=64), "any.safetensors")

    assert COMFYUI_PROMPT_CHUNK not in read_png_text(png)


def test_hires_and_variation_runs_carry_no_comfyui_workflow(models_dir: Path) -> None:
    base = tiny_recipe("tiny-sd", seeds=(1,), size=64)
    hires = dataclasses.replace(base, hires_scale=1.5, hires_steps=1, hires_denoise=0.5)
    variation = dataclasses.replace(base, subseeds=(99,), subseed_strength=0.3)

    for recipe in (hires, variation):
        assert COMFYUI_PROMPT_CHUNK not in read_png_text(one_png(models_dir, recipe, "sd.safetensors"))


def test_an_empty_checkpoint_name_turns_the_workflow_off(models_dir: Path) -> None:
    png = one_png(models_dir, tiny_recipe("tiny-sd", seeds=(1,), size=64), "")

    assert COMFYUI_PROMPT_CHUNK not in read_png_text(png)


def test_the_checkpoint_table_starts_from_the_official_file_names_and_refuses_an_unknown_profile() -> None:
    table = comfyui_checkpoint_table("sdxl-turbo=turbo.safetensors, tiny-sd=")

    assert COMFYUI_CHECKPOINTS["sdxl-base"] == "sd_xl_base_1.0.safetensors"
    assert table["sdxl-turbo"] == "turbo.safetensors"
    assert table["sdxl-base"] == "sd_xl_base_1.0.safetensors"
    assert table["tiny-sd"] == ""
    assert "flux-dev-nf4" not in table
    with pytest.raises(ValueError, match="no-such-model"):
        comfyui_checkpoint_table("no-such-model=x.safetensors")
    with pytest.raises(ValueError, match="sdxl-base"):
        comfyui_checkpoint_table("sdxl-base")


@pytest.mark.django_db(transaction=True)
def test_a_worker_made_candidate_names_the_checkpoint_from_the_setting(settings, article, editor) -> None:
    settings.HOFFDESK_COMFYUI_CHECKPOINTS = {"tiny-sd": "house-sd15.safetensors"}
    run = run_submit(article=article, model="tiny-sd", seed=11, count=1, width=64, height=64, steps=2)

    assert tasks.run_generate(run.pk) == "succeeded", GenerationRun.objects.get(pk=run.pk).error
    candidate = GenerationRun.objects.get(pk=run.pk).candidates.get()
    with candidate.image.open("rb") as fh:
        graph = json.loads(read_png_text(fh.read())[COMFYUI_PROMPT_CHUNK])
    assert graph["1"]["inputs"]["ckpt_name"] == "house-sd15.safetensors"
    assert graph["5"]["inputs"]["seed"] == 11


def test_published_renditions_carry_neither_comfyuis_prompt_nor_its_workflow_chunk() -> None:
    """A guard for gallery/renditions.py: a candidate with ComfyUI's chunks publishes only pixels."""
    info = PngInfo()
    info.add_text("prompt", json.dumps({"5": {"class_type": "KSampler", "inputs": {"seed": 424242}}}))
    info.add_text("workflow", json.dumps({"nodes": [{"type": "MarkerNodeZq"}], "links": []}))
    buffer = io.BytesIO()
    Image.new("RGB", (1216, 640), (90, 120, 150)).save(buffer, format="PNG", pnginfo=info)
    source = buffer.getvalue()
    assert {"prompt", "workflow"} <= set(read_png_text(source))

    renditions = renditions_make(source, alt_text="A lighthouse at dusk", hero_size=(1200, 630))
    assert renditions
    for rendition in renditions:
        assert b"KSampler" not in rendition.data and b"MarkerNodeZq" not in rendition.data, rendition.name
        with Image.open(io.BytesIO(rendition.data)) as image:
            assert not {"prompt", "workflow"} & set(image.info), rendition.name
