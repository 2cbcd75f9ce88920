"""The core loop through a real ``qcluster`` process on the test database."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django_q.models import OrmQ
from PIL import Image

from gallery.models import Article
from generation.engine.metadata import parse_a1111_parameters, read_png_text, read_recipe
from generation.models import GenerationRun
from generation.services import run_cancel, run_submit
from generation.tasks import run_generate
from tests.conftest import ROOT, database_url, wait_finished, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def expected_sdxl_turbo_failure() -> str:
    """Why sdxl-turbo cannot run here: no CUDA GPU, or (on a GPU box) no downloaded weights."""
    import torch

    return "fetch_models sdxl-turbo" if torch.cuda.is_available() else "sdxl-turbo needs an NVIDIA GPU with CUDA"


def run_files(run: GenerationRun) -> list[Path]:
    folder = Path(settings.CANDIDATES_DIR) / "runs" / f"{run.pk:06d}"
    return sorted(folder.glob("*.png")) if folder.exists() else []


def test_imported_article_run_makes_four_pngs_with_recipes(start_worker, tmp_path) -> None:
    articles = tmp_path / "articles.json"
    articles.write_text(
        json.dumps(
            [
                {
                    "slug": "warm-pipelines",
                    "title": "Keeping pipelines warm",
                    "summary": "Why the worker loads a model once.",
                    "content_type": "technical",
                    "tone": "practical",
                    "series": "",
                }
            ]
        )
    )
    call_command("import_articles", str(articles), stdout=io.StringIO())
    worker = start_worker()
    run = run_submit(
        article=Article.objects.get(slug="warm-pipelines"), model="tiny-sd", seed=1234, count=4, width=256, height=192
    )

    wait_finished(run, worker=worker)

    assert run.status == GenerationRun.Status.SUCCEEDED, run.error
    assert (run.progress_step, run.progress_total) == (run.steps, run.steps)
    candidates = list(run.candidates.order_by("index"))
    assert [c.seed for c in candidates] == [1234, 1235, 1236, 1237]
    for candidate in candidates:
        data = candidate.image.read()
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG"
            assert image.size == (256, 192) == (candidate.width, candidate.height)
        recipe = read_recipe(data)
        assert recipe["seed"] == candidate.seed
        assert recipe["profile"] == "tiny-sd"
        assert (recipe["width"], recipe["height"], recipe["steps"]) == (256, 192, run.steps)
        assert recipe["prompt"] == run.prompt
        parameters = parse_a1111_parameters(read_png_text(data)["parameters"])
        assert parameters["Seed"] == str(candidate.seed)
        assert parameters["Size"] == "256x192"
        assert parameters["prompt"] == run.prompt
    assert len(run_files(run)) == 4


def test_same_seed_gives_identical_pngs_and_another_seed_differs(start_worker, article) -> None:
    worker = start_worker(HOFFDESK_PRELOAD="false")  # the first run loads (tests/generation/test_preload.py: preloaded)
    params = {"article": article, "model": "tiny-sd", "count": 2, "width": 128, "height": 128, "steps": 4}
    first = run_submit(seed=77, **params)
    second = run_submit(seed=77, **params)
    other = run_submit(seed=78, **params)
    for run in (first, second, other):
        wait_finished(run, worker=worker)
        assert run.status == GenerationRun.Status.SUCCEEDED, run.error

    def pngs(run: GenerationRun) -> list[bytes]:
        return [c.image.read() for c in run.candidates.order_by("index")]

    assert pngs(first) == pngs(second)
    assert [c.sha256 for c in first.candidates.order_by("index")] == [
        c.sha256 for c in second.candidates.order_by("index")
    ]
    assert pngs(first)[0] != pngs(other)[0]
    # The warm cache: only the first run loaded the model.
    assert first.load_seconds is not None and first.load_seconds > 0
    assert second.load_seconds == 0.0 and other.load_seconds == 0.0


def test_cancel_during_a_run_leaves_no_candidates_and_worker_takes_the_next(start_worker, article) -> None:
    worker = start_worker()
    long_run = run_submit(article=article, model="tiny-sd", seed=5, count=2, width=128, height=128, steps=1000)
    next_run = run_submit(article=article, model="tiny-sd", seed=6, count=1, width=128, height=128, steps=2)

    def started() -> bool:
        long_run.refresh_from_db()
        return long_run.status == GenerationRun.Status.RUNNING and long_run.progress_step >= 2

    wait_for(started, 90, "the long run to make progress", worker)
    assert run_cancel(run=long_run)

    wait_finished(long_run, timeout=30, worker=worker)
    assert long_run.status == GenerationRun.Status.CANCELLED
    assert long_run.progress_step < 1000
    assert long_run.candidates.count() == 0
    assert run_files(long_run) == []
    wait_finished(next_run, worker=worker)
    assert next_run.status == GenerationRun.Status.SUCCEEDED, next_run.error
    assert next_run.candidates.count() == 1


def test_cancel_before_a_worker_takes_the_run_never_starts_it(start_worker, article) -> None:
    run = run_submit(article=article, model="tiny-sd", seed=1, count=1, width=64, height=64, steps=1)
    assert run_cancel(run=run)
    worker = start_worker()
    later = run_submit(article=article, model="tiny-sd", seed=2, count=1, width=64, height=64, steps=1)
    wait_finished(later, worker=worker)
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.CANCELLED
    assert run.attempts == 0 and run.started_at is None


def _kill_mid_run(start_worker, article, **worker_env: str) -> GenerationRun:
    worker = start_worker(**worker_env)
    run = run_submit(article=article, model="tiny-sd", seed=4321, count=3, width=128, height=128, steps=60)

    def midway() -> bool:
        run.refresh_from_db()
        return run.status == GenerationRun.Status.RUNNING and run.progress_step >= 3

    wait_for(midway, 90, "the run to be midway", worker)
    worker.kill_hard()
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.RUNNING
    assert run.attempts == 1
    return run


def test_kill_9_mid_run_then_new_worker_finishes_it_exactly_once(start_worker, article) -> None:
    run = _kill_mid_run(start_worker, article)

    worker = start_worker()
    wait_finished(run, worker=worker)

    assert run.status == GenerationRun.Status.SUCCEEDED, run.error
    assert run.attempts == 2
    assert sorted(run.candidates.values_list("index", "seed")) == [(0, 4321), (1, 4322), (2, 4323)]
    assert len(run_files(run)) == 3
    # The killed cluster's queue entry stays locked in the broker (the recovery's entry is
    # acknowledged once its task returns) ...
    wait_for(lambda: OrmQ.objects.count() == 1, 30, "the recovery's task to be acknowledged", worker)
    # ... and when it is handed out again, it finds the run finished and writes nothing.
    assert run_generate(run.pk) == "not claimed: succeeded"
    assert run.candidates.count() == 3


def test_kill_9_over_the_attempt_limit_fails_with_a_reason(start_worker, article) -> None:
    run = _kill_mid_run(start_worker, article, HOFFDESK_RUN_MAX_ATTEMPTS="1")

    worker = start_worker(HOFFDESK_RUN_MAX_ATTEMPTS="1")
    wait_finished(run, worker=worker)

    assert run.status == GenerationRun.Status.FAILED
    assert "worker stopped" in run.error and "limit is 1" in run.error
    assert run.candidates.count() == 0
    assert run_files(run) == []


@pytest.fixture
def real_weights_present(settings, tmp_path: Path) -> dict[str, str]:
    """Demo mode off and an sdxl-turbo weights folder present, as on the owner's machine, so a
    run asking for sdxl-turbo is queued and reaches the worker instead of a tiny stand-in. The
    environment returned is the worker's (it shares the test's models folder)."""
    models = tmp_path / "models"
    (models / "sdxl-turbo").mkdir(parents=True)
    (models / "sdxl-turbo" / "model_index.json").write_text("{}")
    settings.HOFFDESK_DEMO = "false"
    settings.HOFFDESK_MODELS_DIR = models
    return {"HOFFDESK_DEMO": "false", "HOFFDESK_MODELS_DIR": str(models)}


def test_pipeline_error_fails_the_run_with_advice_and_the_worker_goes_on(
    start_worker, article, real_weights_present
) -> None:
    worker = start_worker(**real_weights_present)
    # A real profile on a machine without a CUDA GPU fails inside the worker, before loading.
    broken = run_submit(article=article, model="sdxl-turbo", seed=1, count=1, steps=1)
    after = run_submit(article=article, model="tiny-sd", seed=1, count=1, width=64, height=64, steps=1)

    wait_finished(broken, worker=worker)
    wait_finished(after, worker=worker)

    assert broken.status == GenerationRun.Status.FAILED
    assert expected_sdxl_turbo_failure() in broken.error
    assert after.status == GenerationRun.Status.SUCCEEDED, after.error


def test_generate_wait_exits_1_and_reports_the_failure_as_json(start_worker, article, real_weights_present) -> None:
    worker = start_worker(**real_weights_present)
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "generate",
            article.slug,
            "--model",
            "sdxl-turbo",
            "--steps",
            "1",
            "--wait",
            "--json",
        ],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url(), **real_weights_present},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, (result.stdout, result.stderr, worker.output()[-2000:])
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["status"] == "failed" and expected_sdxl_turbo_failure() in last["error"]
    assert last["candidates"] == []
    assert "run " in result.stderr  # the progress bar


def test_editors_write_while_the_worker_writes_progress_without_database_locks(start_worker, article) -> None:
    # Progress on every step: the worker writes as often as it can while this process writes too.
    worker = start_worker(HOFFDESK_PROGRESS_INTERVAL="0")
    long_run = run_submit(article=article, model="tiny-sd", seed=9, count=1, width=64, height=64, steps=1000)
    wait_for(
        lambda: GenerationRun.objects.filter(pk=long_run.pk, progress_step__gte=5).exists(),
        60,
        "progress writes",
        worker,
    )
    for seed in range(40):  # each a transaction of its own: create + enqueue, then cancel
        extra = run_submit(article=article, model="tiny-sd", seed=seed, count=1, width=64, height=64, steps=1)
        assert run_cancel(run=extra)
    long_run.refresh_from_db()
    assert long_run.status == GenerationRun.Status.RUNNING
    assert run_cancel(run=long_run)
    wait_finished(long_run, timeout=30, worker=worker)
    assert long_run.status == GenerationRun.Status.CANCELLED
    assert "database is locked" not in worker.output()
    assert GenerationRun.objects.filter(status=GenerationRun.Status.CANCELLED).count() == 41


def test_a_run_orphaned_by_a_worker_on_another_host_is_taken_up_by_a_busy_worker(start_worker, article) -> None:
    from datetime import timedelta

    from django.utils import timezone

    worker = start_worker()
    warm_up = run_submit(article=article, model="tiny-sd", seed=10, count=1, width=64, height=64, steps=1)
    wait_finished(warm_up, worker=worker)  # this worker is up and past its start-time recovery
    # Another GPU box claimed this run and went silent: its heartbeat is an hour old, and its
    # queue entry is locked over there, so nothing here would ever hand the run out.
    orphan = GenerationRun.objects.create(
        article=article,
        model_profile="tiny-sd",
        prompt="an orphan",
        width=64,
        height=64,
        steps=2,
        guidance=7.0,
        base_seed=11,
        count=1,
        status=GenerationRun.Status.RUNNING,
        attempts=1,
        worker="gpu-box-2:4242",
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )

    later = run_submit(article=article, model="tiny-sd", seed=12, count=1, width=64, height=64, steps=1)
    wait_finished(later, worker=worker)
    wait_finished(orphan, worker=worker)

    assert orphan.status == GenerationRun.Status.SUCCEEDED, orphan.error
    assert orphan.attempts == 2 and orphan.candidates.count() == 1
