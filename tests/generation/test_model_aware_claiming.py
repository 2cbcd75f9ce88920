"""Fewer model switches (issue 18, item 6): the worker takes queued runs of the model it holds
loaded first, but never passes a run over for longer than ``HOFFDESK_SWITCH_WAIT``; the queue
places on the dashboard are that same order. The tasks run in-process on the tiny models (the
queue's own code path: ``run_generate`` with a run id), the heartbeat is this process's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from gallery.views import _queue_places
from generation import tasks
from generation.models import GenerationRun
from generation.services import run_submit

pytestmark = [pytest.mark.usefixtures("fixed_threads"), pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def worker_cache(settings, models_dir):
    """A fresh engine cache in this process: nothing loaded yet."""
    settings.HOFFDESK_MODELS_DIR = models_dir
    settings.HOFFDESK_SWITCH_WAIT = 120.0
    tasks._cache = None
    yield
    tasks._cache = None


def queue(article, model: str, waited: float = 0.0) -> GenerationRun:
    run = run_submit(article=article, model=model, width=64, height=64, steps=1, count=1, seed=11)
    if waited:
        GenerationRun.objects.filter(pk=run.pk).update(queued_at=timezone.now() - timedelta(seconds=waited))
    return run


def status(run: GenerationRun) -> str:
    return GenerationRun.objects.get(pk=run.pk).status


def test_the_task_of_an_older_run_takes_the_run_of_the_loaded_model_first(article) -> None:
    first = queue(article, "tiny-sd")
    assert tasks.run_generate(first.pk) == "succeeded"  # tiny-sd is loaded now

    other_model = queue(article, "tiny-flux")
    same_model = queue(article, "tiny-sd")
    assert tasks.run_generate(other_model.pk) == "succeeded"
    assert (status(other_model), status(same_model)) == ("queued", "succeeded")
    # The task of the run taken first takes the one passed over: one task, one run.
    assert tasks.run_generate(same_model.pk) == "succeeded"
    assert status(other_model) == "succeeded"


def test_a_run_waiting_past_the_switch_wait_goes_before_the_loaded_model(article) -> None:
    first = queue(article, "tiny-sd")
    assert tasks.run_generate(first.pk) == "succeeded"

    overdue = queue(article, "tiny-flux", waited=121)
    same_model = queue(article, "tiny-sd")
    assert tasks.run_generate(same_model.pk) == "succeeded"
    assert (status(overdue), status(same_model)) == ("succeeded", "queued")


def test_the_queue_places_shown_are_the_order_the_worker_claims_them(article, admin_client) -> None:
    first = queue(article, "tiny-sd")
    assert tasks.run_generate(first.pk) == "succeeded"  # the heartbeat says tiny-sd is loaded

    runs = [queue(article, model) for model in ("tiny-flux", "tiny-sd", "tiny-flux", "tiny-sd")]
    runs.append(queue(article, "tiny-flux", waited=300))  # newest by id, but passed over too long
    places = _queue_places()
    shown = sorted(places, key=places.__getitem__)
    assert shown != sorted(places)  # not plain FIFO: the test would prove nothing

    page = admin_client.get(f"/articles/{article.slug}/").content.decode()
    next_one = GenerationRun.objects.get(pk=shown[0])
    assert next_one.queued_at < timezone.now() - timedelta(seconds=120)
    assert "1 (next) in the queue" in page

    claimed = []
    for run in runs:  # each task in the order the broker hands them out
        tasks.run_generate(run.pk)
        claimed += [
            pk
            for pk in GenerationRun.objects.filter(status="succeeded")
            .order_by("started_at")
            .values_list("pk", flat=True)
            if pk not in claimed and pk != first.pk
        ]
    assert claimed == shown


def test_a_gpu_task_never_takes_a_cloud_run_and_each_queue_keeps_its_own_places(article) -> None:
    """Cloud runs are the light cluster's (``run_enqueue``): outside the GPU order altogether."""
    cloud = queue(article, "tiny-flux", waited=500)
    GenerationRun.objects.filter(pk=cloud.pk).update(cloud_cost="0.0400")
    gpu = queue(article, "tiny-sd")
    assert _queue_places() == {cloud.pk: 1, gpu.pk: 1}
    other = queue(article, "tiny-flux")
    assert tasks.run_generate(other.pk) == "succeeded"
    assert (status(cloud), status(gpu), status(other)) == ("queued", "succeeded", "queued")
