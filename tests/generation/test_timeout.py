"""Runs that can never finish: refused before queueing when the GPU-time estimate passes the task
timeout, and a run that django-q2's timeout stops fails once with that reason (never retried)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from generation.models import GenerationRun
from generation.profiles import get_profile
from generation.recovery import runs_recover_orphaned
from generation.services import run_submit
from generation.tasks import runs_sweep
from generation.validation import run_gpu_seconds_estimate, run_validate
from tests.conftest import wait_finished

pytestmark = pytest.mark.django_db


def test_a_run_that_cannot_finish_inside_the_task_timeout_is_refused_naming_the_limit(settings, tmp_path) -> None:
    settings.HOFFDESK_MODELS_DIR = tmp_path
    (tmp_path / "flux-dev-nf4").mkdir()
    (tmp_path / "flux-dev-nf4" / "model_index.json").write_text("{}")
    with pytest.raises(ValidationError) as caught:
        run_validate(model="flux-dev-nf4", prompt="a lighthouse", width=2048, height=2048, count=8, steps=50)
    message = caught.value.message_dict["steps"][0]
    assert "task timeout of 1800 s (HOFFDESK_TASK_TIMEOUT)" in message and "flux-dev-nf4" in message
    # The editor's default hero run fits easily.
    run_validate(model="flux-dev-nf4", prompt="a lighthouse", width=1216, height=640, count=4)


def test_tiny_profiles_refuse_a_thousand_steps_at_a_megapixel_times_eight() -> None:
    with pytest.raises(ValidationError) as caught:
        run_validate(model="tiny-sd", prompt="a lighthouse", width=1024, height=1024, count=8, steps=1000)
    assert "HOFFDESK_TASK_TIMEOUT" in caught.value.message_dict["steps"][0]


def test_the_estimate_learns_from_the_workers_past_runs(article) -> None:
    flux = get_profile("flux-dev-nf4")
    default = run_gpu_seconds_estimate(profile=flux, width=1024, height=1024, steps=10, count=1)
    assert default == pytest.approx(1024 * 1024 / 1e6 * 10 * flux.seconds_per_megapixel_step)
    # A card twice as fast as the default guess: ~1.25 s per megapixel-step, measured.
    measured = 1024 * 1024 / 1e6 * 40 * 1.25
    for seed in range(3):
        GenerationRun.objects.create(
            article=article, model_profile="flux-dev-nf4", engine_profile="flux-dev-nf4", prompt="x",
            width=1024, height=1024, steps=20, guidance=3.5, base_seed=seed, count=2,
            status=GenerationRun.Status.SUCCEEDED, finished_at=timezone.now(), gpu_seconds=measured,
        )  # fmt: skip
    learned = run_gpu_seconds_estimate(profile=flux, width=1024, height=1024, steps=10, count=1)
    assert learned < default and learned == pytest.approx(1024 * 1024 / 1e6 * 10 * 1.25 * 1.25)


def test_a_dead_workers_run_past_its_deadline_fails_instead_of_being_queued_again(article) -> None:
    run = run_submit(article=article, model="tiny-sd", seed=1, count=1, width=64, height=64, steps=2)
    assert run.claim(max_attempts=3, worker="a-gone-gpu-box:4242", timeout=2)
    long_ago = timezone.now() - timedelta(minutes=10)  # silent, and past its deadline
    GenerationRun.objects.filter(pk=run.pk).update(heartbeat_at=long_ago, deadline_at=long_ago)
    assert runs_recover_orphaned() == [run.pk]
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("failed", 1)
    assert "task timeout of" in run.error and "HOFFDESK_TASK_TIMEOUT" in run.error


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_run_stopped_by_the_task_timeout_fails_once_and_is_never_requeued(start_slow_saver, article) -> None:
    # Saving its one image takes a minute; the worker's task timeout is 4 s.
    run = run_submit(article=article, model="tiny-sd", seed=3, count=1, width=64, height=64, steps=2)
    worker, _marker = start_slow_saver(60.0, HOFFDESK_TASK_TIMEOUT="4")
    run = wait_finished(run, timeout=120, worker=worker)
    assert (run.status, run.attempts) == ("failed", 1), (run.error, worker.output()[-3000:])
    assert "task timeout of 4 s (HOFFDESK_TASK_TIMEOUT)" in run.error
    assert run.candidates.count() == 0
    # Nothing takes it up again: not the worker that django-q2 starts in the killed one's place,
    # not the periodic sweep.
    time.sleep(2)
    assert runs_sweep() == {"recovered": [], "requeued": [], "moved": [], "remade": []}
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("failed", 1)
