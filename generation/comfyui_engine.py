"""Making a run's candidates on a ComfyUI server: the engine half of issue 17.

A run whose preset names a ``ComfyWorkflow`` is claimed, heart-beaten, recovered and cancelled by
the worker exactly like a diffusers run (``generation.tasks``); only the making of the images
differs, and that is here. ComfyUI gives a whole batch one seed, while our recipe promises that
each candidate can be made again alone, so each candidate is its own prompt with batch size 1
and its own seed (base seed + index): re-running one seed alone gives the same bytes.

Before anything is sent, every prompt id (chosen by us, which ComfyUI accepts) and the exact graph
are written on the run (``GenerationRun.comfy_prompts``), so a cancel, a crash recovery or a
later reader can find and stop them on the server; whatever way a run ends here, the prompts it
queued and did not finish are deleted or interrupted (``comfyui_let_go``), so no prompt runs on
ComfyUI that no run owns.

No torch here: a light host's qcluster can drive a remote ComfyUI box.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError

from generation.comfyui import Cancelled, ComfyUIClient, ComfyUIError, new_prompt_id
from generation.models import GenerationRun
from generation.results import GeneratedImage, GenerationResult
from generation.workflows import graph_for_recipe, read_values

logger = logging.getLogger(__name__)

# What the ``parameters`` chunk says made the image (no torch here to ask for versions).
HOFFDESK_VERSION = "0.1.0"


class _Progress:
    """ComfyUI's ``progress`` frames as our (step, total) across the candidates, written like the
    diffusers worker's (at most every ``HOFFDESK_PROGRESS_INTERVAL``, always at a candidate's last
    step); the same write, or a check as often, tells ``follow`` to stop when the run is no
    longer wanted (an editor's cancel, or another attempt took it)."""

    def __init__(self, run: GenerationRun) -> None:
        self.run = run
        self.per_candidate = max(run.steps, 1)
        self.total = self.per_candidate * len(run.seeds)
        self.index = 0
        self.unwanted = False
        self.last_write = 0.0
        self.last_check = time.monotonic()

    def on_progress(self, value: int, maximum: int) -> None:
        done = min(self.per_candidate, round(self.per_candidate * value / maximum)) if maximum else 0
        self._write(self.index * self.per_candidate + done, last=value >= maximum)

    def candidate_done(self) -> None:
        self._write((self.index + 1) * self.per_candidate, last=True)
        self.index += 1

    def _write(self, step: int, *, last: bool) -> None:
        now = time.monotonic()
        if not last and now - self.last_write < settings.HOFFDESK_PROGRESS_INTERVAL:
            return
        self.last_write = self.last_check = now
        try:
            self.unwanted = not self.run.record_progress(step, self.total) or self.unwanted
        except DatabaseError:
            logger.warning("run %s: writing progress failed; going on", self.run.pk, exc_info=True)

    def should_cancel(self) -> bool:
        now = time.monotonic()
        if not self.unwanted and now - self.last_check >= settings.HOFFDESK_PROGRESS_INTERVAL:
            self.last_check = now
            try:
                self.unwanted = not GenerationRun.objects.filter(self.run.wanted_attempt()).exists()
            except DatabaseError:
                logger.warning("run %s: reading the cancel flag failed; going on", self.run.pk, exc_info=True)
        return self.unwanted


# (ComfyUI's PNG, our recipe) -> the PNG with our recipe chunks added beside ComfyUI's own, and
# its size. The worker passes the one writer of our chunks (``generation.engine.metadata``).
AddRecipe = Callable[[bytes, dict[str, Any]], tuple[bytes, int, int]]


def comfyui_generate(run: GenerationRun, add_recipe: AddRecipe) -> GenerationResult:
    """Make ``run``'s candidates on the ComfyUI server, one prompt per seed; the run must be
    claimed by this attempt. Raises ``comfyui.Cancelled`` when the run is no longer wanted,
    ``ConnectionLost`` when the server went away, and other ``ComfyUIError``s (a rejected graph, a
    node that failed) with ComfyUI's message."""
    client = ComfyUIClient.from_settings()
    workflow = run.comfy_workflow
    if client is None or workflow is None:
        raise ComfyUIError("no ComfyUI server is configured (HOFFDESK_COMFYUI_URL) for this run's workflow")
    # One client id per run and attempt: this attempt's WebSocket gets only its own frames.
    client_id = f"hoffdesk-run-{run.pk}-a{run.attempts}-{uuid.uuid4().hex[:8]}"
    prompts: list[dict[str, Any]] = [
        {"index": index, "seed": seed, "prompt_id": new_prompt_id(), "graph": comfyui_graph(run, seed)}
        for index, seed in enumerate(run.seeds)
    ]
    if not run.record_comfy_prompts(prompts):
        raise Cancelled("the run was cancelled before anything was sent to ComfyUI")
    progress = _Progress(run)
    unfinished = [str(p["prompt_id"]) for p in prompts]
    started = time.monotonic()
    images = []
    try:
        for prompt in prompts:
            client.submit(prompt["graph"], client_id, prompt["prompt_id"])
        for prompt in prompts:
            client.follow(prompt["prompt_id"], client_id, progress.on_progress, progress.should_cancel)
            unfinished.remove(prompt["prompt_id"])
            progress.candidate_done()
            images.append(_candidate(run, prompt, client.images(prompt["prompt_id"]), add_recipe))
    finally:
        if unfinished:
            comfyui_let_go(unfinished, client=client)
    return GenerationResult(images=images, load_seconds=0.0, inference_seconds=time.monotonic() - started)


def comfyui_let_go(prompt_ids: list[str], *, client: ComfyUIClient | None = None) -> None:
    """Best effort, never raises: delete these prompts from ComfyUI's queue and interrupt the one
    running, so nothing runs there for a run that has ended or moved to another attempt."""
    client = client or ComfyUIClient.from_settings()
    if client is None or not prompt_ids:
        return
    try:
        client.delete_queued(list(prompt_ids))
        running = client.queue().running
        for prompt_id in prompt_ids:
            if prompt_id in running:
                client.interrupt(prompt_id)
    except (ComfyUIError, OSError):
        logger.warning("ComfyUI: letting go of prompts %s failed (the server may be gone)", prompt_ids, exc_info=True)


def comfyui_graph(run: GenerationRun, seed: int) -> dict[str, Any]:
    """The workflow with this candidate's recipe written in (batch size 1, its own seed)."""
    workflow = run.comfy_workflow
    assert workflow is not None
    mapping = workflow.mapping
    return graph_for_recipe(
        workflow.graph,
        mapping,
        prompt=run.prompt,
        negative_prompt=run.negative_prompt if "negative_prompt" in mapping else "",
        seed=seed,
        steps=run.steps,
        width=run.width,
        height=run.height,
        guidance=run.guidance if "guidance" in mapping else None,
        batch_size=1,
    )


def _candidate(
    run: GenerationRun, prompt: dict[str, Any], files: list[tuple[str, bytes]], add_recipe: AddRecipe
) -> GeneratedImage:
    """The first image ComfyUI saved for this prompt, with our recipe chunks added beside its
    own ``prompt`` and ``workflow`` chunks (so the file still opens in ComfyUI)."""
    if not files:
        raise ComfyUIError(f"the workflow saved no image for candidate {prompt['index']} (it needs a SaveImage node)")
    png, width, height = add_recipe(files[0][1], _recipe(run, prompt))
    return GeneratedImage(
        index=int(prompt["index"]),
        seed=int(prompt["seed"]),
        png=png,
        sha256=hashlib.sha256(png).hexdigest(),
        width=width,
        height=height,
    )


def _recipe(run: GenerationRun, prompt: dict[str, Any]) -> dict[str, Any]:
    """What remakes this one image: the workflow version and the values the sent graph holds.
    Nothing run-specific (no run id, no batch of the others), so re-running this seed alone gives
    the same bytes."""
    workflow = run.comfy_workflow
    assert workflow is not None
    values = read_values(prompt["graph"], workflow.mapping)
    return {
        "generator": "hoffdesk-images",
        "hoffdesk_version": HOFFDESK_VERSION,
        "engine": "comfyui",
        "comfy_workflow": workflow.name,
        "comfy_workflow_version": workflow.version,
        "profile": run.model_profile,
        "checkpoint": values.get("checkpoint", ""),
        "sampler": values.get("sampler_name", "ComfyUI workflow"),
        "scheduler": values.get("scheduler", ""),
        "prompt": run.prompt,
        "negative_prompt": values.get("negative_prompt", ""),
        "width": values.get("width", run.width),
        "height": values.get("height", run.height),
        "steps": values.get("steps", run.steps),
        "guidance": values.get("guidance", run.guidance),
        "seed": int(prompt["seed"]),
        "batch_size": 1,
        "batch_index": 0,
    }
