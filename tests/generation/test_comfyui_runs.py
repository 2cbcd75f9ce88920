"""Runs on ComfyUI (issue 17): a preset that names a ComfyUI workflow runs there instead of on our
diffusers worker, through the same queue, claim, attempts, progress, cancel and review.

The ComfyUI server here is ``tests/comfyui_server.py``'s stand-in: it stands in for a ComfyUI box
on another machine (the owner's Gaming PC), which CI does not have; with
``HOFFDESK_TEST_COMFYUI_URL`` set the tests that do not kill the server run against a real one.
The runs are made in this process by the worker's own task (``generation.tasks.run_generate``).
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from django.core.exceptions import ValidationError

from gallery.wand import article_wand
from generation import tasks
from generation.comfyui import ComfyUIClient
from generation.engine.metadata import read_png_text
from generation.models import ComfyWorkflow, GenerationRun, StylePreset, candidate_storage
from generation.services import run_cancel, run_submit
from generation.workflows import propose_mapping
from tests.comfyui_server import ComfyUITarget, sd15_workflow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("migration_data")]


def comfy_preset(checkpoint: str, slug: str = "comfy-sd15") -> StylePreset:
    graph = sd15_workflow(checkpoint)
    workflow = ComfyWorkflow.objects.create(name="sd15", graph=graph, mapping=propose_mapping(graph))
    return StylePreset.objects.create(
        name=slug, slug=slug, comfy_workflow=workflow, width=64, height=64, steps=4, guidance=7.0
    )


@pytest.fixture
def use_comfyui(settings, comfyui: ComfyUITarget) -> ComfyUITarget:
    settings.HOFFDESK_COMFYUI_URL = comfyui.url
    settings.HOFFDESK_PROGRESS_INTERVAL = 0.0
    return comfyui


@pytest.fixture
def use_fresh_comfyui(settings, fresh_comfyui: ComfyUITarget) -> ComfyUITarget:
    settings.HOFFDESK_COMFYUI_URL = fresh_comfyui.url
    settings.HOFFDESK_PROGRESS_INTERVAL = 0.0
    return fresh_comfyui


def stored_files(run_id: int) -> list[str]:
    storage = candidate_storage()
    folder = f"runs/{run_id:06d}"
    return storage.listdir(folder)[1] if storage.exists(folder) else []


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    ends = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < ends, "timed out waiting"
        time.sleep(0.02)


@pytest.fixture
def in_background() -> Iterator[Callable[[int], dict[str, str]]]:
    """Runs the worker's task for a run in a thread (as a worker process would), so the test can
    watch, cancel or kill meanwhile."""
    threads: list[threading.Thread] = []

    def start(run_id: int) -> dict[str, str]:
        outcome: dict[str, str] = {}

        def work() -> None:
            from django.db import connection

            try:
                outcome["status"] = tasks.run_generate(run_id)
            finally:
                connection.close()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        threads.append(thread)
        return outcome

    yield start
    for thread in threads:
        thread.join(timeout=30)


def test_a_magic_wand_run_on_comfyui_makes_candidates_each_made_again_alone_byte_identical(
    use_comfyui, editor, article
) -> None:
    comfy_preset(use_comfyui.checkpoint)
    run = article_wand(article=article, requested_by=editor, preset="comfy-sd15", count=2, seed=1234)
    assert run.comfy_workflow is not None and run.comfy_workflow.version == 1

    assert tasks.run_generate(run.pk) == "succeeded", GenerationRun.objects.get(pk=run.pk).error
    run.refresh_from_db()
    first, second = run.candidates.order_by("index")
    assert (first.seed, second.seed) == (1234, 1235)
    assert first.sha256 != second.sha256
    assert [p["graph"]["5"]["inputs"]["seed"] for p in run.comfy_prompts] == [1234, 1235]
    assert all(p["graph"]["4"]["inputs"]["batch_size"] == 1 for p in run.comfy_prompts)
    assert len({p["prompt_id"] for p in run.comfy_prompts}) == 2
    with first.image.open("rb") as fh:
        chunks = read_png_text(fh.read())
    assert {"prompt", "hoffdesk", "parameters"} <= chunks.keys(), chunks.keys()
    assert "Seed: 1234" in chunks["parameters"]

    for candidate in (first, second):
        again = run_submit(
            article=article, preset=run.preset, prompt=run.prompt, seed=candidate.seed, count=1, requested_by=editor
        )
        assert tasks.run_generate(again.pk) == "succeeded", GenerationRun.objects.get(pk=again.pk).error
        alone = again.candidates.get()
        with alone.image.open("rb") as a, candidate.image.open("rb") as b:
            assert a.read() == b.read()


def test_progress_from_comfyui_reaches_the_run_row(use_comfyui, editor, article, in_background) -> None:
    comfy_preset(use_comfyui.checkpoint)
    run = article_wand(article=article, requested_by=editor, preset="comfy-sd15", count=2, steps=6)
    seen: set[int] = set()
    outcome = in_background(run.pk)
    deadline = time.monotonic() + 30
    while "status" not in outcome and time.monotonic() < deadline:
        seen.add(GenerationRun.objects.values_list("progress_step", flat=True).get(pk=run.pk))
        time.sleep(0.01)
    assert outcome.get("status") == "succeeded", GenerationRun.objects.get(pk=run.pk).error
    run.refresh_from_db()
    assert (run.progress_step, run.progress_total) == (12, 12)
    assert len(seen - {0}) >= 2, seen


def test_cancel_mid_run_ends_cancelled_with_comfyuis_queue_empty_and_nothing_stored(
    use_comfyui, editor, article, in_background
) -> None:
    use_comfyui.needs_stand_in("a slow run to cancel")
    comfy_preset(use_comfyui.checkpoint)
    run = article_wand(article=article, requested_by=editor, preset="comfy-sd15", count=3, steps=40)
    outcome = in_background(run.pk)
    wait_for(lambda: GenerationRun.objects.get(pk=run.pk).progress_step > 0)
    assert run_cancel(run=GenerationRun.objects.get(pk=run.pk))
    wait_for(lambda: "status" in outcome)

    run.refresh_from_db()
    assert run.status == GenerationRun.Status.CANCELLED
    assert len(run.comfy_prompts) == 3  # it ran on ComfyUI, one prompt per candidate
    client = ComfyUIClient(use_comfyui.url)
    wait_for(lambda: not client.queue().running and not client.queue().pending, timeout=5)
    assert run.candidates.count() == 0
    assert stored_files(run.pk) == []


def test_comfyui_killed_mid_run_requeues_the_run_and_after_a_restart_it_succeeds_once(
    use_fresh_comfyui, editor, article, in_background
) -> None:
    server = use_fresh_comfyui.server
    assert server is not None
    comfy_preset(use_fresh_comfyui.checkpoint)
    run = article_wand(article=article, requested_by=editor, preset="comfy-sd15", count=2, steps=40)
    outcome = in_background(run.pk)
    wait_for(lambda: GenerationRun.objects.get(pk=run.pk).progress_step > 0)
    server.kill()
    wait_for(lambda: "status" in outcome)

    run.refresh_from_db()
    assert (run.status, run.attempts) == (GenerationRun.Status.QUEUED, 1), run.error
    assert stored_files(run.pk) == []
    server.restart()
    assert tasks.run_generate(run.pk) == "succeeded", GenerationRun.objects.get(pk=run.pk).error
    run.refresh_from_db()
    assert run.attempts == 2
    assert run.candidates.count() == 2
    assert len(stored_files(run.pk)) == 2
    assert tasks.run_generate(run.pk) == "not claimed: succeeded"


def test_comfyui_killed_at_the_attempt_limit_fails_the_run_with_the_reason(
    use_fresh_comfyui, settings, editor, article, in_background
) -> None:
    settings.HOFFDESK_RUN_MAX_ATTEMPTS = 1
    server = use_fresh_comfyui.server
    assert server is not None
    comfy_preset(use_fresh_comfyui.checkpoint)
    run = article_wand(article=article, requested_by=editor, preset="comfy-sd15", count=1, steps=40)
    outcome = in_background(run.pk)
    wait_for(lambda: GenerationRun.objects.get(pk=run.pk).progress_step > 0)
    server.kill()
    wait_for(lambda: "status" in outcome)
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.FAILED
    assert "ComfyUI" in run.error and "1 attempt" in run.error, run.error


def test_a_checkpoint_the_server_lacks_is_refused_before_queueing(use_comfyui, editor, article) -> None:
    comfy_preset("no-such-model.safetensors")
    with pytest.raises(ValidationError) as refused:
        article_wand(article=article, requested_by=editor, preset="comfy-sd15", count=1)
    assert "no-such-model.safetensors" in str(refused.value)
    assert not GenerationRun.objects.exists()


def test_a_node_type_the_server_lacks_is_refused_before_queueing(use_comfyui, editor, article) -> None:
    preset = comfy_preset(use_comfyui.checkpoint)
    workflow = preset.comfy_workflow
    assert workflow is not None
    workflow.graph["6"]["class_type"] = "FancyDecoder"
    workflow.save()
    with pytest.raises(ValidationError) as refused:
        article_wand(article=article, requested_by=editor, preset="comfy-sd15", count=1)
    assert "FancyDecoder" in str(refused.value)
    assert not GenerationRun.objects.exists()


def test_an_unreachable_comfyui_server_is_refused_before_queueing(settings, comfyui, editor, article) -> None:
    settings.HOFFDESK_COMFYUI_URL = "http://127.0.0.1:9"
    comfy_preset(comfyui.checkpoint)
    with pytest.raises(ValidationError) as refused:
        article_wand(article=article, requested_by=editor, preset="comfy-sd15", count=1)
    assert "ComfyUI" in str(refused.value) and "not reachable" in str(refused.value)
    assert not GenerationRun.objects.exists()


def test_a_comfyui_preset_without_a_configured_server_is_refused(settings, comfyui, editor, article) -> None:
    settings.HOFFDESK_COMFYUI_URL = ""
    comfy_preset(comfyui.checkpoint)
    with pytest.raises(ValidationError) as refused:
        article_wand(article=article, requested_by=editor, preset="comfy-sd15", count=1)
    assert "HOFFDESK_COMFYUI_URL" in str(refused.value)
    assert not GenerationRun.objects.exists()


def test_healthz_says_whether_comfyui_is_reachable_and_its_queue_length(client, settings, use_fresh_comfyui) -> None:
    body = client.get("/healthz").json()
    assert body["comfyui"]["reachable"] is True
    assert body["comfyui"]["queue_running"] == 0 and body["comfyui"]["queue_pending"] == 0
    assert use_fresh_comfyui.url not in str(body)
    assert use_fresh_comfyui.server is not None
    use_fresh_comfyui.server.kill()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["comfyui"]["reachable"] is False
    settings.HOFFDESK_COMFYUI_URL = ""
    assert client.get("/healthz").json()["comfyui"] is None


def test_a_dead_workers_comfyui_prompts_are_deleted_on_the_server_when_its_run_is_recovered(
    use_comfyui, editor, article
) -> None:
    use_comfyui.needs_stand_in("a prompt queued by hand, left by a 'dead' worker")
    from generation.comfyui import new_prompt_id
    from generation.recovery import runs_recover_orphaned

    comfy_preset(use_comfyui.checkpoint)
    run = article_wand(article=article, requested_by=editor, preset="comfy-sd15", count=2, steps=40)
    # A worker whose process has ended left its two prompts on ComfyUI (one running, one queued).
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert run.claim(max_attempts=3, worker=f"{socket.gethostname()}:{dead.pid}")
    client = ComfyUIClient(use_comfyui.url)
    graph = sd15_workflow(use_comfyui.checkpoint)
    graph["5"]["inputs"]["steps"] = 200  # 10 s each on the stand-in: only a deletion empties the queue soon
    prompts = []
    for seed in (1, 2):
        graph["5"]["inputs"]["seed"] = seed
        prompt_id = new_prompt_id()
        client.submit(graph, "left-behind", prompt_id)
        prompts.append({"index": seed - 1, "seed": seed, "prompt_id": prompt_id, "graph": graph})
    assert run.record_comfy_prompts(prompts)
    wait_for(lambda: bool(client.queue().running))

    assert runs_recover_orphaned() == [run.pk]
    assert GenerationRun.objects.get(pk=run.pk).status == GenerationRun.Status.QUEUED
    wait_for(lambda: not client.queue().running and not client.queue().pending, timeout=2)


def test_the_worker_banner_says_whether_comfyui_answers_and_its_queue(settings, use_fresh_comfyui) -> None:
    from generation.health import comfyui_banner

    assert "reachable (version 0.3.99-stand-in), 0 running and 0 waiting" in comfyui_banner()
    assert use_fresh_comfyui.server is not None
    use_fresh_comfyui.server.kill()
    assert "NOT reachable" in comfyui_banner()
    settings.HOFFDESK_COMFYUI_URL = ""
    assert "not configured" in comfyui_banner()


def test_an_exact_rerun_sends_the_workflow_version_its_source_ran_not_the_newest(use_comfyui, editor, article) -> None:
    from generation.services import run_regenerate

    preset = comfy_preset(use_comfyui.checkpoint)
    source = run_submit(article=article, preset=preset, prompt="a lighthouse", seed=5, count=1, requested_by=editor)
    first = preset.comfy_workflow
    assert first is not None
    newer = ComfyWorkflow.objects.create(name=first.name, version=2, graph=first.graph, mapping=first.mapping)
    StylePreset.objects.filter(pk=preset.pk).update(comfy_workflow=newer)  # what saving a change in the admin does
    source = GenerationRun.objects.get(pk=source.pk)  # as a view loads it

    exact = run_regenerate(source=source, mode="exact", requested_by=editor)
    more = run_regenerate(source=source, mode="more", requested_by=editor)
    assert exact.comfy_workflow_id == first.pk  # the same graph, so the same bytes
    assert more.comfy_workflow_id == newer.pk  # a new run takes the preset's newest
