"""The GPU worker that claims a run decides what runs, from its own models folder; the web
predicts it from the workers' heartbeats and says before queueing when a stand-in will run."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from generation.models import WorkerHeartbeat
from generation.services import run_submit
from generation.validation import run_validate
from tests.conftest import wait_finished, wait_for

pytestmark = pytest.mark.django_db


def fake_weights(models_dir: Path, name: str) -> None:
    """What ``fetch_models`` leaves at the top of a profile's folder (the web only looks)."""
    (models_dir / name).mkdir(parents=True, exist_ok=True)
    (models_dir / name / "model_index.json").write_text("{}")


def beat(worker: str, profiles: dict[str, str], cluster: str = "hoffdesk") -> None:
    WorkerHeartbeat.objects.create(worker=worker, cluster=cluster, seen_at=timezone.now(), profiles=profiles)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_whose_folder_lacks_the_weights_runs_the_stand_in_and_records_it(
    start_worker, article, settings, tmp_path: Path, client
) -> None:
    # The web host has FLUX.1-dev weights; the GPU worker's own folder has none (demo there).
    web_models = tmp_path / "web-models"
    fake_weights(web_models, "flux-dev-nf4")
    settings.HOFFDESK_MODELS_DIR = web_models
    run = run_submit(article=article, model="flux-dev-nf4", width=256, height=256, steps=2, count=1, seed=5)
    assert run.engine_profile == "flux-dev-nf4"  # the web's guess, with no worker seen yet

    worker = start_worker(HOFFDESK_MODELS_DIR=str(tmp_path / "worker-models"))
    run = wait_finished(run, timeout=120, worker=worker)
    assert (run.status, run.engine_profile, run.is_stand_in) == ("succeeded", "tiny-flux", True), run.error
    assert run.candidates.count() == 1

    # Its heartbeat says what it can run, and /healthz lists that per worker.
    def reported() -> bool:
        return any(w["profiles"] for w in client.get("/healthz").json()["gpu_workers"])

    wait_for(reported, 30, "the worker's profiles in /healthz", worker)
    (listed,) = client.get("/healthz").json()["gpu_workers"]
    assert listed["profiles"]["flux-dev-nf4"] == "tiny-flux"
    assert listed["profiles"]["tiny-sd"] == "tiny-sd"

    # Now the web knows better than its own folder: the next FLUX run is queued as a stand-in,
    # and the run says why.
    second = run_submit(article=article, model="flux-dev-nf4", width=256, height=256, steps=2, count=1)
    assert second.engine_profile == "tiny-flux"
    assert "no GPU worker has flux-dev-nf4 weights: this run will use the stand-in tiny-flux" in second.engine_note


def test_a_worker_with_the_weights_wins_over_one_without(article, settings, tmp_path: Path) -> None:
    settings.HOFFDESK_MODELS_DIR = tmp_path  # the web has nothing
    beat("box-a:1", {"flux-dev-nf4": "tiny-flux", "tiny-flux": "tiny-flux"})
    beat("box-b:2", {"flux-dev-nf4": "flux-dev-nf4", "tiny-flux": "tiny-flux"})
    params = run_validate(model="flux-dev-nf4", prompt="a lighthouse", width=1216, height=640)
    assert (params.engine_profile, params.engine_note) == ("flux-dev-nf4", "")


def test_no_live_worker_can_run_it_is_refused_before_queueing(article, settings, tmp_path: Path) -> None:
    settings.HOFFDESK_MODELS_DIR = tmp_path
    beat("box-a:1", {"tiny-sd": "tiny-sd"})  # a worker with HOFFDESK_DEMO=false and no weights
    with pytest.raises(ValidationError) as caught:
        run_validate(model="flux-dev-nf4", prompt="a lighthouse")
    message = caught.value.message_dict["model"][0]
    assert "no GPU worker can run flux-dev-nf4" in message and "fetch_models flux-dev-nf4" in message


def test_a_silent_workers_report_does_not_count(article, settings, tmp_path: Path) -> None:
    settings.HOFFDESK_MODELS_DIR = tmp_path
    beat("box-a:1", {"flux-dev-nf4": "flux-dev-nf4"})
    WorkerHeartbeat.objects.update(seen_at=timezone.now() - timedelta(minutes=10))
    params = run_validate(model="flux-dev-nf4", prompt="a lighthouse")
    assert params.engine_profile == "tiny-flux"  # the web's own folder: nothing, so demo


def test_a_stand_in_takes_a_hero_size_but_not_more_than_its_own_pixel_limit(settings, tmp_path: Path) -> None:
    settings.HOFFDESK_MODELS_DIR = tmp_path
    hero = run_validate(model="flux-dev-nf4", prompt="a lighthouse", width=1216, height=640, count=1)
    assert (hero.engine_profile, hero.width, hero.height) == ("tiny-flux", 1216, 640)
    with pytest.raises(ValidationError) as caught:
        run_validate(model="flux-dev-nf4", prompt="a lighthouse", width=2048, height=2048, count=1)
    message = caught.value.message_dict["width"][0]
    assert "tiny-flux" in message and "1024x1024" in message


def test_the_generate_form_says_before_queueing_which_models_will_run_on_a_stand_in(
    editor_client, article, settings, tmp_path: Path
) -> None:
    settings.HOFFDESK_MODELS_DIR = tmp_path
    beat("box-a:1", {"flux-dev-nf4": "tiny-flux", "sdxl-turbo": "sdxl-turbo", "tiny-sd": "tiny-sd"})
    page = editor_client.get(article.get_absolute_url()).content.decode()
    assert "No GPU worker has flux-dev-nf4 weights: this run will use the stand-in tiny-flux" in page
    assert "sdxl-turbo weights" not in page
    assert "No GPU worker can run sd3-medium" in page  # neither its weights nor demo mode anywhere


@pytest.mark.django_db(transaction=True)
def test_a_size_the_stand_in_cannot_make_is_refused_by_the_worker_that_chose_it(
    article, settings, tmp_path: Path
) -> None:
    from generation import tasks

    settings.HOFFDESK_MODELS_DIR = tmp_path  # this worker has no weights: it would stand in
    beat("gpu-box:1", {"flux-dev-nf4": "flux-dev-nf4"})  # ...but the web saw one that has them
    run = run_submit(article=article, model="flux-dev-nf4", width=2048, height=2048, steps=2, count=1)
    assert run.engine_profile == "flux-dev-nf4"

    assert tasks.run_generate(run.pk) == "failed"
    run.refresh_from_db()
    assert (run.status, run.attempts, run.engine_profile) == ("failed", 1, "tiny-flux")
    assert "1024x1024" in run.error and "tiny-flux" in run.error


def test_the_demo_notice_follows_the_gpu_workers_not_the_web_hosts_folder(
    editor_client, settings, tmp_path: Path
) -> None:
    settings.HOFFDESK_MODELS_DIR = tmp_path  # the web host has no weights
    settings.HOFFDESK_DEFAULT_MODEL = "flux-dev-nf4"
    assert b'data-testid="demo-notice"' in editor_client.get("/").content
    beat("gpu-box:1", {"flux-dev-nf4": "flux-dev-nf4", "tiny-sd": "tiny-sd"})
    assert b'data-testid="demo-notice"' not in editor_client.get("/").content
