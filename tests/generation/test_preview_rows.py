"""Live previews on the worker's side: one row per candidate, replaced as the run goes on, read
only while the run is running, gone when it ends, and never a reason for a run to fail."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from generation import tasks
from generation.models import GenerationRun, RunPreview
from generation.previews import (
    PreviewingProgress,
    preview_image,
    previews_delete_finished,
    previews_of,
    previews_write,
)
from generation.services import run_submit

pytestmark = pytest.mark.django_db(transaction=True)


def jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def tiny_run(article, steps: int = 4, count: int = 2) -> GenerationRun:
    return run_submit(article=article, model="tiny-sd", seed=5, count=count, width=64, height=64, steps=steps)


def running(run: GenerationRun) -> GenerationRun:
    assert run.claim(3, engine_profile="tiny-sd")
    return run


def test_each_candidate_has_one_preview_row_replaced_at_each_write(article) -> None:
    run = running(tiny_run(article))
    red, blue = jpeg((255, 0, 0)), jpeg((0, 0, 255))
    assert previews_write(run_id=run.pk, images=[red, red], step=2)
    assert previews_write(run_id=run.pk, images=[blue, red], step=4)

    assert [(p.index, p.step) for p in previews_of(run_id=run.pk)] == [(0, 4), (1, 4)]
    assert RunPreview.objects.filter(run=run).count() == 2
    assert preview_image(run_id=run.pk, index=0) == blue
    assert preview_image(run_id=run.pk, index=5) is None


def test_a_finished_runs_previews_are_neither_shown_nor_kept(article) -> None:
    run = running(tiny_run(article))
    previews_write(run_id=run.pk, images=[jpeg((9, 9, 9))], step=2)
    assert run.fail("broken")

    assert previews_of(run_id=run.pk) == [] and preview_image(run_id=run.pk, index=0) is None
    tasks.runs_sweep()  # the periodic sweep deletes what a worker that died mid-run left
    assert not RunPreview.objects.exists()
    assert previews_delete_finished() == 0


def test_a_database_error_writing_a_preview_is_logged_not_raised(article, caplog) -> None:
    run = tiny_run(article)
    gone = run.pk
    run.delete()  # the row the preview points at: the insert breaks its foreign key

    assert previews_write(run_id=gone, images=[jpeg((1, 2, 3))], step=2) is False
    assert "preview" in caplog.text and not RunPreview.objects.exists()


def test_previews_come_every_n_steps_and_no_faster_than_the_time_throttle(article) -> None:
    steps: list[int] = []
    every_two = PreviewingProgress(run_id=1, on_step=lambda s, t: steps.append(s), every=2, min_seconds=0.0)
    assert [every_two.preview_due(step) for step in range(1, 7)] == [False, True, False, True, False, True]
    every_two(3, 10)
    assert steps == [3]

    throttled = PreviewingProgress(run_id=1, on_step=lambda s, t: None, every=1, min_seconds=3600.0)
    assert [throttled.preview_due(step) for step in range(1, 4)] == [True, False, False]

    off = PreviewingProgress(run_id=1, on_step=lambda s, t: None, every=0, min_seconds=0.0)
    assert not any(off.preview_due(step) for step in range(1, 10))


def test_the_workers_progress_reporter_takes_previews_and_stores_them(article, settings) -> None:
    settings.HOFFDESK_PREVIEW_EVERY = 3
    run = running(tiny_run(article, steps=6))
    reporter = tasks._progress_reporter(run)
    assert isinstance(reporter, PreviewingProgress) and reporter.every == 3

    reporter.preview([jpeg((0, 0, 0)), jpeg((0, 0, 0))], 3)
    assert [(p.index, p.step) for p in previews_of(run_id=run.pk)] == [(0, 3), (1, 3)]
    reporter(4, 6)  # still the progress callback it was
    run.refresh_from_db()
    assert run.progress_step == 4


def test_a_run_that_ends_leaves_no_previews_whatever_its_end(article) -> None:
    succeeded = tiny_run(article, steps=2)
    # A preview left by an earlier attempt of this run that died mid-run.
    RunPreview.objects.create(run=succeeded, index=0, step=1, image=jpeg((5, 5, 5)))
    assert tasks.run_generate(succeeded.pk) == "succeeded", GenerationRun.objects.get(pk=succeeded.pk).error
    assert not RunPreview.objects.filter(run=succeeded).exists()

    failed = tiny_run(article, steps=2)
    # An upscaler that is not installed: the engine refuses the run before its first step.
    GenerationRun.objects.filter(pk=failed.pk).update(
        hires_scale=2.0, hires_upscaler="no-such-upscaler", hires_steps=1, hires_denoise=0.5
    )
    RunPreview.objects.create(run=failed, index=0, step=1, image=jpeg((5, 5, 5)))
    assert tasks.run_generate(failed.pk) == "failed"
    assert "no-such-upscaler" in GenerationRun.objects.get(pk=failed.pk).error
    assert not RunPreview.objects.filter(run=failed).exists()
