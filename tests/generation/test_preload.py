"""No wait for the first load (issue 18, item 4): a GPU worker loads its default model (or the last
day's most used) when it starts, beside its heartbeat, which says "loading" and then "loaded";
the dashboard's banner and /healthz show the load while it lasts."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from generation.models import GenerationRun, WorkerHeartbeat
from generation.preload import preload_profile
from generation.services import run_submit
from tests.conftest import wait_finished, wait_for


def beat_row() -> WorkerHeartbeat | None:
    return WorkerHeartbeat.objects.filter(cluster="hoffdesk").order_by("-seen_at").first()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_fresh_worker_has_its_default_model_loaded_before_the_first_task(start_worker, article, client) -> None:
    # The load is made slow on purpose (a documented test knob) so its "loading" state is seen.
    worker = start_worker(HOFFDESK_DEFAULT_MODEL="tiny-flux", HOFFDESK_TEST_LOAD_DELAY="3")

    wait_for(lambda: bool((b := beat_row()) and b.loading_profile == "tiny-flux"), 60, "loading in the beat", worker)
    first_seen = beat_row().seen_at  # type: ignore[union-attr]
    listed = client.get("/healthz").json()["gpu_workers"][0]
    assert (listed["loading_profile"], listed["loaded_profile"]) == ("tiny-flux", "")
    # The load does not stop the beat: seen_at moves on while the model still loads.
    wait_for(lambda: beat_row().seen_at > first_seen, 10, "a beat during the load", worker)  # type: ignore[union-attr]
    assert beat_row().loading_profile == "tiny-flux"  # type: ignore[union-attr]

    wait_for(lambda: beat_row().loaded_profile == "tiny-flux", 60, "loaded in the beat", worker)  # type: ignore[union-attr]
    assert (beat_row().loading_profile, beat_row().loading_since) == ("", None)  # type: ignore[union-attr]

    run = run_submit(article=article, model="tiny-flux", width=64, height=64, steps=1, count=1, seed=4)
    run = wait_finished(run, timeout=120, worker=worker)
    assert run.status == "succeeded", run.error
    assert run.load_seconds == 0.0  # warm: the first task did not load anything
    assert "preloaded tiny-flux" in worker.output()


@pytest.mark.django_db
def test_the_model_preloaded_is_the_most_asked_for_of_the_last_day(article, settings) -> None:
    settings.HOFFDESK_DEFAULT_MODEL = "tiny-sd"
    assert preload_profile().name == "tiny-sd"  # type: ignore[union-attr]  # no runs: the default

    def submit(model: str, days_ago: float = 0.0) -> None:
        run = run_submit(article=article, model=model, width=64, height=64, steps=1, count=1)
        GenerationRun.objects.filter(pk=run.pk).update(queued_at=timezone.now() - timedelta(days=days_ago))

    for _ in range(3):
        submit("tiny-flux", days_ago=2)  # the most of all, but not of the last day
    submit("tiny-sd3")
    submit("tiny-sd3")
    submit("tiny-sdxl")
    assert preload_profile().name == "tiny-sd3"  # type: ignore[union-attr]


@pytest.mark.django_db
def test_a_real_model_on_a_worker_without_cuda_is_not_preloaded(settings, tmp_path) -> None:
    (tmp_path / "flux-dev-nf4").mkdir()
    (tmp_path / "flux-dev-nf4" / "model_index.json").write_text("{}")  # its weights "are here"
    settings.HOFFDESK_MODELS_DIR = tmp_path
    settings.HOFFDESK_DEFAULT_MODEL = "flux-dev-nf4"
    settings.HOFFDESK_DEMO = "false"
    assert preload_profile() is None  # no CUDA: never tens of GB on a CPU


@pytest.mark.django_db
def test_the_banner_says_which_model_is_loading_and_for_how_long(admin_client) -> None:
    WorkerHeartbeat.objects.create(
        worker="gpu-box:1",
        cluster="hoffdesk",
        seen_at=timezone.now(),
        loading_profile="flux-dev-nf4",
        loading_since=timezone.now() - timedelta(seconds=40),
    )
    page = admin_client.get("/").content.decode()
    # 40 s and whatever this (busy, shared) machine took since.
    assert re.search(r"loading FLUX\.1-dev \(4-bit nf4\) \((4\d|5\d) s\)", page), page
    assert "No GPU worker has been seen" not in page
    listed = admin_client.get("/healthz").json()["gpu_workers"][0]
    assert listed["loading_profile"] == "flux-dev-nf4" and 40 <= listed["loading_seconds"] < 60
