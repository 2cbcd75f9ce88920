"""ComfyUI workflows as data: read an API-format graph, map our recipe onto its node inputs.

An owner exports a workflow from ComfyUI in API format (a dict of node id -> ``{class_type,
inputs}``, where an input is a value or a link ``[node_id, output_index]``), or uploads a PNG
ComfyUI saved (its ``prompt`` text chunk holds that graph). A *mapping* says which node input
takes each recipe field: ``{"seed": ["5", "seed"], ...}``. ``propose_mapping`` reads it off the
common node types by following the links from the sampler, as Open WebUI and Krita AI Diffusion
ask their users to; the admin may edit it; ``mapping_problems`` names the node of anything that
cannot work, so a broken mapping is never saved; ``graph_for_recipe`` fills a recipe into a copy.

``workflow_for_diffusers_recipe`` goes the other way (issue 17, item 6): the ComfyUI graph that
redoes one of our SD/SDXL recipes, for a PNG an editor can drop into ComfyUI. It is the same recipe
(prompt, seed, steps, guidance, size, sampler, checkpoint), not the same pixels: ComfyUI's noise
and sigma schedules are its own. FLUX and SD3 get none (see there).

No torch here: the web process validates uploads with this module.
"""

from __future__ import annotations

import copy
import io
import json
from typing import Any

from PIL import Image, UnidentifiedImageError

Graph = dict[str, Any]
Mapping = dict[str, list[str]]

# The recipe fields a mapping may name, and the kind of value each input must hold.
TEXT_FIELDS = ("prompt", "negative_prompt", "sampler_name", "scheduler", "checkpoint")
NUMBER_FIELDS = ("seed", "steps", "guidance", "denoise", "width", "height", "batch_size")
FIELDS = (
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "guidance",
    "sampler_name",
    "scheduler",
    "denoise",
    "width",
    "height",
    "batch_size",
    "checkpoint",
)
REQUIRED_FIELDS = ("prompt", "seed", "width", "height", "steps")

SAMPLERS = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
TEXT_ENCODERS = {"CLIPTextEncode": "text"}
EMPTY_LATENTS = ("EmptyLatentImage", "EmptySD3LatentImage")
LOADERS = {"CheckpointLoaderSimple": "ckpt_name", "UNETLoader": "unet_name"}
# Nodes between a loader and the sampler that pass the model through (LoRAs, patches).
_MODEL_INPUTS = ("model",)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class WorkflowError(ValueError):
    """The upload is not a usable API-format workflow, or a mapping/recipe does not fit it; the
    message names the field and the node."""


# --- reading an upload -------------------------------------------------------------------------


def load_workflow(data: bytes | str) -> Graph:
    """The API-format graph in a JSON text or in the ``prompt`` text chunk of a PNG ComfyUI saved."""
    if isinstance(data, bytes) and data.startswith(_PNG_SIGNATURE):
        try:
            text = Image.open(io.BytesIO(data)).text.get("prompt")  # type: ignore[attr-defined]
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise WorkflowError(f"the PNG cannot be read: {exc}") from None
        if not text:
            raise WorkflowError("the PNG has no `prompt` text chunk: save it from ComfyUI with metadata on")
        data = text
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise WorkflowError("the workflow is not JSON") from None
    if isinstance(parsed, dict) and isinstance(parsed.get("prompt"), dict) and "class_type" not in parsed:
        parsed = parsed["prompt"]  # a whole POST /prompt body
    if not isinstance(parsed, dict) or not parsed:
        raise WorkflowError("the workflow is empty or not a dict of nodes")
    if "nodes" in parsed and "links" in parsed:
        raise WorkflowError(
            "this is ComfyUI's UI format (a saved workflow); export it in API format "
            "(Workflow > Export (API)) and upload that"
        )
    for node_id, node in parsed.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise WorkflowError(f"node {node_id} has no class_type: not an API-format workflow")
        if not isinstance(node.get("inputs"), dict):
            raise WorkflowError(f"node {node_id} ({node['class_type']}) has no inputs: not an API-format workflow")
    return parsed


# --- following links ---------------------------------------------------------------------------


def is_link(value: object) -> bool:
    """An input that takes another node's output: ``[node_id, output_index]``."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str | int) and isinstance(value[1], int)


def _upstream(graph: Graph, node_id: str, input_name: str) -> str | None:
    value = graph.get(node_id, {}).get("inputs", {}).get(input_name)
    if is_link(value) and str(value[0]) in graph:
        return str(value[0])
    return None


def _class(graph: Graph, node_id: str | None) -> str | None:
    return graph[node_id]["class_type"] if node_id is not None and node_id in graph else None


def _has_value(graph: Graph, node_id: str, input_name: str) -> bool:
    inputs = graph[node_id]["inputs"]
    return input_name in inputs and not is_link(inputs[input_name])


def _latent_distance(graph: Graph, node_id: str | None, depth: int = 0) -> tuple[int, str] | None:
    """How many links up from ``node_id`` an empty latent is, and which node it is."""
    if node_id is None or depth > 20:
        return None
    if _class(graph, node_id) in EMPTY_LATENTS:
        return depth, node_id
    found = [
        hit
        for value in graph[node_id]["inputs"].values()
        if is_link(value) and (hit := _latent_distance(graph, str(value[0]), depth + 1)) is not None
    ]
    return min(found) if found else None


def _trace_text(graph: Graph, node_id: str | None, side: str, found: dict[str, list[str]]) -> list[str] | None:
    """The text encoder input behind a conditioning link, through conditioning nodes (ControlNet,
    combine, FluxGuidance: whose ``guidance`` is noted in ``found``)."""
    seen: set[str] = set()
    while node_id is not None and node_id not in seen:
        seen.add(node_id)
        class_type = _class(graph, node_id)
        if class_type in TEXT_ENCODERS:
            return [node_id, TEXT_ENCODERS[class_type]]
        if class_type == "FluxGuidance" and side == "positive":
            found.setdefault("guidance", [node_id, "guidance"])
        inputs = graph[node_id]["inputs"]
        names = [side, "conditioning", *sorted(name for name in inputs if name.startswith("conditioning"))]
        node_id = next((up for name in names if (up := _upstream(graph, node_id, name)) is not None), None)
    return None


def _trace_loader(graph: Graph, node_id: str | None) -> list[str] | None:
    seen: set[str] = set()
    while node_id is not None and node_id not in seen:
        seen.add(node_id)
        class_type = _class(graph, node_id)
        if class_type in LOADERS:
            return [node_id, LOADERS[class_type]]
        node_id = next((up for name in _MODEL_INPUTS if (up := _upstream(graph, node_id, name)) is not None), None)
    return None


def _id_key(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)


def _primary_sampler(graph: Graph) -> str | None:
    """The sampler that starts from an empty latent (the first pass of a hires graph), lowest id
    on a tie."""
    samplers = sorted((node_id for node_id, node in graph.items() if node["class_type"] in SAMPLERS), key=_id_key)
    if not samplers:
        return None
    ranked = []
    for node_id in samplers:
        distance = _latent_distance(graph, _upstream(graph, node_id, "latent_image"))
        ranked.append((distance[0] if distance else 1 << 30, _id_key(node_id), node_id))
    return min(ranked)[2]


# --- proposing a mapping -----------------------------------------------------------------------


def propose_mapping(graph: Graph) -> Mapping:
    """The node inputs that take each recipe field, read off the common node types by following
    links from the sampler. Fields it cannot find are left out (``mapping_problems`` says which
    required ones are missing)."""
    found: dict[str, list[str]] = {}
    sampler = _primary_sampler(graph)
    if sampler is not None:
        _map_sampler(graph, sampler, found)
        latent = _latent_distance(graph, _upstream(graph, sampler, "latent_image"))
        if latent is not None:
            for field in ("width", "height", "batch_size"):
                found[field] = [latent[1], field]
    _fill_from_lone_nodes(graph, found)
    return {field: [str(node_id), name] for field in FIELDS if field in found for node_id, name in [found[field]]}


def _map_sampler(graph: Graph, sampler: str, found: dict[str, list[str]]) -> None:
    class_type = graph[sampler]["class_type"]
    positive = negative = None
    model_from = sampler
    if class_type in ("KSampler", "KSamplerAdvanced"):
        found["seed"] = [sampler, "seed" if class_type == "KSampler" else "noise_seed"]
        for field, name in (("steps", "steps"), ("sampler_name", "sampler_name"), ("scheduler", "scheduler")):
            found[field] = [sampler, name]
        if class_type == "KSampler":
            found["denoise"] = [sampler, "denoise"]
        positive, negative = _upstream(graph, sampler, "positive"), _upstream(graph, sampler, "negative")
        cfg: list[str] | None = [sampler, "cfg"]
    else:  # SamplerCustom(Advanced): noise, guider, sampler and sigmas come from nodes of their own
        cfg = None
        if class_type == "SamplerCustom":
            found["seed"] = [sampler, "noise_seed"]
            cfg = [sampler, "cfg"]
            positive, negative = _upstream(graph, sampler, "positive"), _upstream(graph, sampler, "negative")
        noise = _upstream(graph, sampler, "noise")
        if _class(graph, noise) == "RandomNoise" and noise is not None:
            found["seed"] = [noise, "noise_seed"]
        guider = _upstream(graph, sampler, "guider")
        if _class(graph, guider) == "CFGGuider" and guider is not None:
            cfg = [guider, "cfg"]
            positive, negative = _upstream(graph, guider, "positive"), _upstream(graph, guider, "negative")
        elif _class(graph, guider) == "BasicGuider" and guider is not None:
            positive = _upstream(graph, guider, "conditioning")
        if guider is not None:
            model_from = guider
        chooser = _upstream(graph, sampler, "sampler")
        if _class(graph, chooser) == "KSamplerSelect" and chooser is not None:
            found["sampler_name"] = [chooser, "sampler_name"]
        sigmas = _upstream(graph, sampler, "sigmas")
        if _class(graph, sigmas) == "BasicScheduler" and sigmas is not None:
            for field in ("steps", "scheduler", "denoise"):
                found[field] = [sigmas, field]
    text = _trace_text(graph, positive, "positive", found)
    if text is not None:
        found["prompt"] = text
    text = _trace_text(graph, negative, "negative", found)
    if text is not None and text != found.get("prompt"):
        found["negative_prompt"] = text
    if cfg is not None and "guidance" not in found:  # FluxGuidance, when there is one, is the guidance
        found["guidance"] = cfg
    loader = _trace_loader(graph, _upstream(graph, model_from, "model"))
    if loader is not None:
        found["checkpoint"] = loader
    # Drop what the graph holds as links (a primitive node feeding the seed, say): not mappable.
    for field, (node_id, name) in list(found.items()):
        if not _has_value(graph, node_id, name):
            del found[field]


def _fill_from_lone_nodes(graph: Graph, found: dict[str, list[str]]) -> None:
    """Where links led nowhere, a graph with exactly one empty latent or one loader still says."""
    latents = [node_id for node_id, node in graph.items() if node["class_type"] in EMPTY_LATENTS]
    if "width" not in found and len(latents) == 1:
        for field in ("width", "height", "batch_size"):
            if _has_value(graph, latents[0], field):
                found[field] = [latents[0], field]
    loaders = [node_id for node_id, node in graph.items() if node["class_type"] in LOADERS]
    if "checkpoint" not in found and len(loaders) == 1:
        found["checkpoint"] = [loaders[0], LOADERS[graph[loaders[0]]["class_type"]]]


# --- checking and applying a mapping -----------------------------------------------------------


def _label(graph: Graph, node_id: str) -> str:
    return f"node {node_id} ({graph[node_id]['class_type']})"


def mapping_problems(
    graph: Graph, mapping: dict[str, Any], *, required: tuple[str, ...] = REQUIRED_FIELDS
) -> list[str]:
    """Everything wrong with ``mapping`` for ``graph``, one message per problem naming the field and
    the node; empty when it can be saved."""
    problems: list[str] = []
    used: dict[tuple[str, str], str] = {}
    for field, target in mapping.items():
        if field not in FIELDS:
            problems.append(f"{field}: not a recipe field")
            continue
        if not (
            isinstance(target, list | tuple) and len(target) == 2 and all(isinstance(x, str | int) for x in target)
        ):
            problems.append(f"{field}: must be [node id, input name]")
            continue
        node_id, name = str(target[0]), str(target[1])
        if node_id not in graph:
            problems.append(f"{field}: node {node_id} does not exist in the workflow")
            continue
        inputs, where = graph[node_id]["inputs"], _label(graph, node_id)
        if name not in inputs:
            problems.append(f"{field}: {where} has no input `{name}`")
            continue
        value = inputs[name]
        if is_link(value):
            problems.append(f"{field}: {where} input `{name}` is a link to node {value[0]}, not a value")
            continue
        if field in NUMBER_FIELDS and (isinstance(value, bool) or not isinstance(value, int | float)):
            held = "text" if isinstance(value, str) else type(value).__name__
            problems.append(f"{field}: {where} input `{name}` holds {held}, not a number")
            continue
        if field in TEXT_FIELDS and not isinstance(value, str):
            problems.append(f"{field}: {where} input `{name}` holds {value!r}, not text")
            continue
        if (node_id, name) in used:
            problems.append(f"{field}: {where} input `{name}` is already mapped to {used[node_id, name]}")
            continue
        used[node_id, name] = field
    problems.extend(f"{field}: not mapped (it is required)" for field in required if field not in mapping)
    return problems


def read_values(graph: Graph, mapping: Mapping) -> dict[str, Any]:
    """The values a graph holds for each mapped field: what a run really used, for its record
    (guidance or sampler left to the workflow show up here)."""
    return {field: graph[node_id]["inputs"][name] for field, (node_id, name) in mapping.items()}


def graph_for_recipe(
    graph: Graph,
    mapping: Mapping,
    *,
    prompt: str,
    seed: int,
    steps: int,
    width: int,
    height: int,
    negative_prompt: str = "",
    guidance: float | None = None,
    batch_size: int = 1,
    checkpoint: str | None = None,
    sampler_name: str | None = None,
    scheduler: str | None = None,
    denoise: float | None = None,
) -> Graph:
    """A copy of ``graph`` with the recipe written into the mapped inputs (the upload is never
    changed). Fields the workflow has no input for: guidance, sampler, scheduler and denoise stay as
    the workflow has them (``read_values`` tells); a negative prompt, a batch size other than 1 or
    a checkpoint is refused, since dropping them would change the picture behind the editor's back."""
    problems = mapping_problems(graph, mapping)
    if problems:
        raise WorkflowError("; ".join(problems))
    values: dict[str, Any] = {
        "prompt": prompt,
        "seed": int(seed),
        "steps": int(steps),
        "width": int(width),
        "height": int(height),
        "negative_prompt": negative_prompt,
        "guidance": None if guidance is None else float(guidance),
        "batch_size": int(batch_size),
        "checkpoint": checkpoint,
        "sampler_name": sampler_name,
        "scheduler": scheduler,
        "denoise": None if denoise is None else float(denoise),
    }
    refused_when_unmapped = {
        "negative_prompt": bool(negative_prompt),
        "batch_size": batch_size != 1,
        "checkpoint": bool(checkpoint),
    }
    for field, refused in refused_when_unmapped.items():
        if refused and field not in mapping:
            raise WorkflowError(f"{field}: the workflow has no input for it")
    result = copy.deepcopy(graph)
    for field, value in values.items():
        if value is None or field not in mapping:
            continue
        node_id, name = mapping[field]
        result[node_id]["inputs"][name] = value
    return result


# --- our recipe as a ComfyUI workflow ---------------------------------------------------------

# Our samplers (profile labels, AUTOMATIC1111's names) as ComfyUI's sampler and scheduler.
COMFYUI_SAMPLERS = {
    "Euler": ("euler", "normal"),
    "Euler a": ("euler_ancestral", "normal"),
    "DPM++ 2M": ("dpmpp_2m", "normal"),
    "DPM++ 2M Karras": ("dpmpp_2m", "karras"),
    "DDIM": ("ddim", "ddim_uniform"),
}
# The families whose whole model is one checkpoint file that CheckpointLoaderSimple loads and
# KSampler samples. FLUX and SD3 are left out: ComfyUI runs them from separate UNet, CLIP/T5 and
# VAE files (UNETLoader, DualCLIPLoader or TripleCLIPLoader, FluxGuidance, ModelSampling*) whose
# names and shift settings our recipe does not know, so any graph we wrote would be a guess.
FAITHFUL_FAMILIES = ("sd", "sdxl")


def workflow_for_diffusers_recipe(
    *,
    family: str,
    checkpoint: str,
    prompt: str,
    negative_prompt: str,
    seed: int,
    steps: int,
    guidance: float,
    width: int,
    height: int,
    sampler: str = "Euler",
    batch_size: int = 1,
    filename_prefix: str = "hoffdesk",
) -> Graph | None:
    """The API-format graph that redoes one of our recipes in ComfyUI (CheckpointLoaderSimple ->
    CLIPTextEncode x2 -> EmptyLatentImage -> KSampler -> VAEDecode -> SaveImage), or None where no
    faithful single-checkpoint equivalent exists (FLUX, SD3, a sampler ComfyUI has no match for).
    Same recipe, not the same pixels."""
    if family not in FAITHFUL_FAMILIES or sampler not in COMFYUI_SAMPLERS:
        return None
    sampler_name, scheduler = COMFYUI_SAMPLERS[sampler]
    # diffusers turns classifier-free guidance off at a scale <= 1 (SDXL Turbo runs at 0); ComfyUI's
    # cfg 0 would sample from the negative prompt alone, its cfg 1 is "no guidance".
    cfg = max(float(guidance), 1.0)
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": negative_prompt, "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": batch_size}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "seed": int(seed),
                "steps": int(steps),
                "cfg": cfg,
                "sampler_name": sampler_name,
                "scheduler": scheduler,
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": filename_prefix}},
    }
