"""Every transition is one conditional update: a second worker or editor cannot win twice."""

from __future__ import annotations

import pytest

from generation.models import Candidate, GenerationRun
from generation.recovery import runs_recover_orphaned
from generation.services import run_submit

pytestmark = pytest.mark.django_db
Status = GenerationRun.Status


@pytest.fixture
def run(article) -> GenerationRun:
    return run_submit(article=article, model="tiny-sd", seed=1, count=2, steps=4)


def test_only_one_claim_of_a_queued_run_wins(run) -> None:
    other_copy = GenerationRun.objects.get(pk=run.pk)
    assert run.claim(max_attempts=3, worker="a:1")
    assert not other_copy.claim(max_attempts=3, worker="b:2")
    run.refresh_from_db()
    assert run.status == Status.RUNNING and run.attempts == 1 and run.worker == "a:1"


def test_claim_refuses_a_run_at_its_attempt_limit(run) -> None:
    GenerationRun.objects.filter(pk=run.pk).update(attempts=3)
    run.refresh_from_db()
    assert not run.claim(max_attempts=3)


def test_a_finished_run_cannot_be_finished_again(run) -> None:
    assert run.claim(max_attempts=3)
    stale = GenerationRun.objects.get(pk=run.pk)
    assert run.succeed(load_seconds=0.1, gpu_seconds=1.0)
    assert not stale.fail("too late")
    assert not stale.mark_cancelled()
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED and run.progress_step == run.progress_total


def test_cancel_of_a_queued_run_ends_it_and_a_worker_can_no_longer_claim_it(run) -> None:
    assert run.request_cancel()
    assert run.status == Status.CANCELLED
    assert not GenerationRun.objects.get(pk=run.pk).claim(max_attempts=3)


def test_cancel_of_a_running_run_stops_progress_and_success(run) -> None:
    assert run.claim(max_attempts=3)
    worker_copy = GenerationRun.objects.get(pk=run.pk)
    assert run.request_cancel()
    assert run.status == Status.RUNNING and run.cancel_requested
    assert not worker_copy.record_progress(2, 4)
    assert not worker_copy.succeed(load_seconds=0, gpu_seconds=0)
    assert worker_copy.mark_cancelled()


def test_a_stale_attempt_cannot_write_after_the_run_was_requeued(run) -> None:
    assert run.claim(max_attempts=3)
    old_attempt = GenerationRun.objects.get(pk=run.pk)
    assert run.requeue_orphaned(max_attempts=3)
    assert run.claim(max_attempts=3)
    assert not old_attempt.record_progress(1, 4)
    assert not old_attempt.succeed(load_seconds=0, gpu_seconds=0)
    assert run.succeed(load_seconds=0, gpu_seconds=0)


def test_recovery_requeues_a_run_whose_worker_process_is_gone(run, django_capture_on_commit_callbacks) -> None:
    assert run.claim(max_attempts=3, worker="some-other-host:123")
    GenerationRun.objects.filter(pk=run.pk).update(heartbeat_at=None)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert runs_recover_orphaned() == [run.pk]
    run.refresh_from_db()
    assert run.status == Status.QUEUED and run.attempts == 1
    assert len(callbacks) == 1


def test_recovery_leaves_a_live_workers_run_alone(run) -> None:
    assert run.claim(max_attempts=3, worker="some-other-host:123")
    assert runs_recover_orphaned() == []
    run.refresh_from_db()
    assert run.status == Status.RUNNING


def test_candidate_review_transitions(run, editor) -> None:
    candidate = Candidate.objects.create(
        run=run, index=0, seed=1, image="runs/x.png", width=64, height=64, sha256="0" * 64
    )
    assert candidate.approve(by=editor)
    assert not candidate.approve(by=editor)
    assert candidate.reject(by=editor)  # an editor may change their mind before publishing
    assert not candidate.mark_published(by=editor)
    assert candidate.approve(by=editor)
    assert candidate.mark_published(by=editor)
    assert not candidate.reject(by=editor)
    assert candidate.unpublish(by=editor)
    assert candidate.review_status == Candidate.Review.UNPUBLISHED


def test_migrations_load_the_default_presets_and_hero_template(article) -> None:
    from generation.models import PromptTemplate, StylePreset
    from generation.services import preset_for_article, prompt_for_article

    assert set(StylePreset.objects.filter(image_style=False).values_list("slug", flat=True)) == {
        "technical-deep-dive",
        "tutorial",
        "personal-story",
        "quick-tip",
    }
    assert list(StylePreset.objects.filter(image_style=True).values_list("slug", flat=True)) == [
        "auto",
        "technical",
        "atmospheric",
        "minimal",
    ]
    preset = preset_for_article(article=article)
    assert preset is not None and preset.slug == "technical-deep-dive"
    prompt, template = prompt_for_article(article=article, preset=preset)
    assert template == PromptTemplate.objects.get(name="hero", version=2)
    assert article.title in prompt and "photorealistic" in prompt
