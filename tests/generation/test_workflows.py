"""ComfyUI workflows as data (generation/workflows.py): reading an API-format graph, proposing
which node inputs take our recipe's fields, refusing a broken mapping by node, filling a recipe
in, and our own recipes as a ComfyUI workflow.

The last tests send graphs to a ComfyUI server: the stand-in of tests/comfyui_server.py (it
stands in for a ComfyUI box on another machine), or a real one named by
``HOFFDESK_TEST_COMFYUI_URL``.
"""

from __future__ import annotations

import copy
import io
import json
import uuid
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from generation.comfyui import ComfyUIClient, new_prompt_id
from generation.workflows import (
    WorkflowError,
    graph_for_recipe,
    load_workflow,
    mapping_problems,
    propose_mapping,
    workflow_for_diffusers_recipe,
)
from tests.comfyui_server import REAL_WORKFLOW_JSON, ComfyUITarget

REAL_SD15 = json.loads(REAL_WORKFLOW_JSON)  # shared/comfyui/api-workflow-sd15.json: what a real ComfyUI ran

# KSamplerAdvanced (noise_seed, no denoise) with the loader and texts under other ids.
ADVANCED = {
    "10": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
    "11": {"class_type": "CLIPTextEncode", "inputs": {"text": "ugly", "clip": ["10", 1]}},
    "12": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["10", 1]}},
    "13": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
    "14": {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            "model": ["10", 0],
            "add_noise": "enable",
            "noise_seed": 5,
            "steps": 25,
            "cfg": 6.5,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "positive": ["12", 0],
            "negative": ["11", 0],
            "latent_image": ["13", 0],
            "start_at_step": 0,
            "end_at_step": 10000,
            "return_with_leftover_noise": "disable",
        },
    },
    "15": {"class_type": "VAEDecode", "inputs": {"samples": ["14", 0], "vae": ["10", 2]}},
    "16": {"class_type": "SaveImage", "inputs": {"images": ["15", 0], "filename_prefix": "adv"}},
}

# FLUX the ComfyUI way: UNETLoader, RandomNoise, FluxGuidance in front of a BasicGuider,
# BasicScheduler and KSamplerSelect into SamplerCustomAdvanced, EmptySD3LatentImage.
FLUX = {
    "1": {
        "class_type": "UNETLoader",
        "inputs": {"unet_name": "flux1-dev-fp8.safetensors", "weight_dtype": "fp8_e4m3fn"},
    },
    "2": {
        "class_type": "DualCLIPLoader",
        "inputs": {"clip_name1": "t5xxl.safetensors", "clip_name2": "clip_l.safetensors", "type": "flux"},
    },
    "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox in snow", "clip": ["2", 0]}},
    "4": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["3", 0], "guidance": 3.5}},
    "5": {"class_type": "BasicGuider", "inputs": {"model": ["1", 0], "conditioning": ["4", 0]}},
    "6": {"class_type": "RandomNoise", "inputs": {"noise_seed": 77}},
    "7": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
    "8": {
        "class_type": "BasicScheduler",
        "inputs": {"model": ["1", 0], "scheduler": "simple", "steps": 20, "denoise": 1.0},
    },
    "9": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
    "10": {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": ["6", 0],
            "guider": ["5", 0],
            "sampler": ["7", 0],
            "sigmas": ["8", 0],
            "latent_image": ["9", 0],
        },
    },
    "11": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
    "12": {"class_type": "VAEDecode", "inputs": {"samples": ["10", 0], "vae": ["11", 0]}},
    "13": {"class_type": "SaveImage", "inputs": {"images": ["12", 0], "filename_prefix": "flux"}},
}


def test_it_proposes_the_mapping_of_the_real_sd15_workflow() -> None:
    assert propose_mapping(REAL_SD15) == {
        "prompt": ["2", "text"],
        "negative_prompt": ["3", "text"],
        "seed": ["5", "seed"],
        "steps": ["5", "steps"],
        "guidance": ["5", "cfg"],
        "sampler_name": ["5", "sampler_name"],
        "scheduler": ["5", "scheduler"],
        "denoise": ["5", "denoise"],
        "width": ["4", "width"],
        "height": ["4", "height"],
        "batch_size": ["4", "batch_size"],
        "checkpoint": ["1", "ckpt_name"],
    }
    assert mapping_problems(REAL_SD15, propose_mapping(REAL_SD15)) == []


def test_it_proposes_the_mapping_of_a_ksampler_advanced_workflow() -> None:
    mapping = propose_mapping(ADVANCED)
    assert mapping["prompt"] == ["12", "text"]  # the one feeding `positive`, not the first by id
    assert mapping["negative_prompt"] == ["11", "text"]
    assert mapping["seed"] == ["14", "noise_seed"]
    assert mapping["steps"] == ["14", "steps"]
    assert mapping["guidance"] == ["14", "cfg"]
    assert mapping["width"] == ["13", "width"] and mapping["height"] == ["13", "height"]
    assert mapping["checkpoint"] == ["10", "ckpt_name"]
    assert "denoise" not in mapping  # KSamplerAdvanced has none
    assert mapping_problems(ADVANCED, mapping) == []


def test_it_proposes_the_mapping_of_a_flux_random_noise_workflow() -> None:
    mapping = propose_mapping(FLUX)
    assert mapping == {
        "prompt": ["3", "text"],
        "seed": ["6", "noise_seed"],
        "steps": ["8", "steps"],
        "guidance": ["4", "guidance"],
        "sampler_name": ["7", "sampler_name"],
        "scheduler": ["8", "scheduler"],
        "denoise": ["8", "denoise"],
        "width": ["9", "width"],
        "height": ["9", "height"],
        "batch_size": ["9", "batch_size"],
        "checkpoint": ["1", "unet_name"],
    }
    assert mapping_problems(FLUX, mapping) == []


def test_it_reads_a_workflow_from_json_or_from_a_png_comfyui_saved() -> None:
    assert load_workflow(REAL_WORKFLOW_JSON) == REAL_SD15
    assert load_workflow(REAL_WORKFLOW_JSON.encode()) == REAL_SD15

    info = PngInfo()
    info.add_text("prompt", REAL_WORKFLOW_JSON)
    info.add_text("workflow", json.dumps({"nodes": [], "links": []}))
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    assert load_workflow(buffer.getvalue()) == REAL_SD15


def test_it_refuses_what_is_not_an_api_format_workflow() -> None:
    with pytest.raises(WorkflowError, match="API format"):
        load_workflow(json.dumps({"nodes": [{"id": 1}], "links": [], "version": 0.4}))
    with pytest.raises(WorkflowError, match="no `prompt` text chunk"):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format="PNG")
        load_workflow(buffer.getvalue())
    with pytest.raises(WorkflowError, match="node 4 has no class_type"):
        load_workflow(json.dumps({"4": {"inputs": {}}}))
    with pytest.raises(WorkflowError, match="not JSON"):
        load_workflow("{nope")


def test_a_broken_mapping_is_refused_naming_the_node() -> None:
    good = propose_mapping(REAL_SD15)

    missing = {field: target for field, target in good.items() if field != "seed"}
    assert mapping_problems(REAL_SD15, missing) == ["seed: not mapped (it is required)"]

    unknown_node = {**good, "seed": ["99", "seed"]}
    assert mapping_problems(REAL_SD15, unknown_node) == ["seed: node 99 does not exist in the workflow"]

    wrong_input = {**good, "steps": ["4", "steps"]}
    assert mapping_problems(REAL_SD15, wrong_input) == ["steps: node 4 (EmptyLatentImage) has no input `steps`"]

    a_link = {**good, "prompt": ["5", "positive"]}
    assert mapping_problems(REAL_SD15, a_link) == [
        "prompt: node 5 (KSampler) input `positive` is a link to node 2, not a value"
    ]

    wrong_kind = {**good, "width": ["2", "text"]}
    assert mapping_problems(REAL_SD15, wrong_kind) == [
        "width: node 2 (CLIPTextEncode) input `text` holds text, not a number"
    ]

    assert mapping_problems(REAL_SD15, {**good, "colour": ["2", "text"]}) == ["colour: not a recipe field"]
    assert mapping_problems(REAL_SD15, {**good, "seed": "5.seed"}) == ["seed: must be [node id, input name]"]


def test_graph_for_recipe_fills_the_recipe_in_and_leaves_the_upload_alone() -> None:
    original = copy.deepcopy(REAL_SD15)
    graph = graph_for_recipe(
        REAL_SD15,
        propose_mapping(REAL_SD15),
        prompt="a lighthouse at dusk",
        negative_prompt="text, watermark",
        seed=1001,
        steps=12,
        guidance=5.5,
        width=640,
        height=384,
        batch_size=1,
        checkpoint="sd15-real.safetensors",
    )
    assert REAL_SD15 == original
    assert graph["2"]["inputs"]["text"] == "a lighthouse at dusk"
    assert graph["3"]["inputs"]["text"] == "text, watermark"
    assert graph["5"]["inputs"]["seed"] == 1001
    assert graph["5"]["inputs"]["steps"] == 12
    assert graph["5"]["inputs"]["cfg"] == 5.5
    assert graph["4"]["inputs"] == {"width": 640, "height": 384, "batch_size": 1}
    assert graph["1"]["inputs"]["ckpt_name"] == "sd15-real.safetensors"
    assert graph["5"]["inputs"]["model"] == ["1", 0]  # links untouched


def test_graph_for_recipe_refuses_what_the_workflow_cannot_take() -> None:
    mapping = propose_mapping(FLUX)
    recipe: dict[str, Any] = dict(seed=1, steps=4, guidance=3.5, width=512, height=512)
    with pytest.raises(WorkflowError, match="negative_prompt: the workflow has no input for it"):
        graph_for_recipe(FLUX, mapping, prompt="a fox", negative_prompt="blurry", **recipe)
    assert (
        graph_for_recipe(FLUX, mapping, prompt="a fox", negative_prompt="", **recipe)["3"]["inputs"]["text"] == "a fox"
    )

    broken = {**mapping, "seed": ["99", "noise_seed"]}
    with pytest.raises(WorkflowError, match="seed: node 99 does not exist"):
        graph_for_recipe(FLUX, broken, prompt="a fox", **recipe)


def test_no_comfyui_workflow_is_offered_where_none_is_faithful() -> None:
    recipe: dict[str, Any] = dict(
        checkpoint="m.safetensors", prompt="p", negative_prompt="", seed=1, steps=4, guidance=0.0, width=512, height=512
    )
    assert workflow_for_diffusers_recipe(family="flux", **recipe) is None
    assert workflow_for_diffusers_recipe(family="sd3", **recipe) is None
    graph = workflow_for_diffusers_recipe(family="sdxl", sampler="Euler a", **recipe)
    assert graph is not None
    assert {node["class_type"] for node in graph.values()} == {
        "CheckpointLoaderSimple",
        "CLIPTextEncode",
        "EmptyLatentImage",
        "KSampler",
        "VAEDecode",
        "SaveImage",
    }
    assert propose_mapping(graph)["seed"] and mapping_problems(graph, propose_mapping(graph)) == []
    sampler = next(node for node in graph.values() if node["class_type"] == "KSampler")
    assert sampler["inputs"]["sampler_name"] == "euler_ancestral"


def test_our_recipe_as_a_workflow_is_accepted_and_run_by_comfyui(comfyui: ComfyUITarget) -> None:
    graph = workflow_for_diffusers_recipe(
        family="sd",
        checkpoint=comfyui.checkpoint,
        prompt="a red apple",
        negative_prompt="blurry",
        seed=4242,
        steps=3,
        guidance=7.0,
        width=64,
        height=64,
        sampler="Euler",
    )
    assert graph is not None
    client = ComfyUIClient(comfyui.url)
    client_id, prompt_id = uuid.uuid4().hex, new_prompt_id()
    client.submit(graph, client_id=client_id, prompt_id=prompt_id)  # HTTP 200: no node_errors
    client.follow(prompt_id, client_id=client_id)
    [(_, png)] = client.images(prompt_id)
    saved: Any = Image.open(io.BytesIO(png))
    assert json.loads(saved.text["prompt"]) == graph


def test_a_mapped_upload_runs_with_the_recipe_filled_in(comfyui: ComfyUITarget) -> None:
    upload = load_workflow(REAL_WORKFLOW_JSON)
    graph = graph_for_recipe(
        upload,
        propose_mapping(upload),
        prompt="a blue pear",
        negative_prompt="",
        seed=8080,
        steps=2,
        guidance=6.0,
        width=64,
        height=64,
        batch_size=1,
        checkpoint=comfyui.checkpoint,
    )
    client = ComfyUIClient(comfyui.url)
    client_id, prompt_id = uuid.uuid4().hex, new_prompt_id()
    client.submit(graph, client_id=client_id, prompt_id=prompt_id)
    client.follow(prompt_id, client_id=client_id)
    [(_, png)] = client.images(prompt_id)
    assert Image.open(io.BytesIO(png)).size == (64, 64)
