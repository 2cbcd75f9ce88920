"""The cloud engine's budget, button and fallback (generation/cloud.py), on the real database.

No cloud server is needed here: nothing in these tests reaches the point of calling one (the
end-to-end test, tests/test_cloud_end_to_end.py, calls a second HoffDesk instance as the cloud).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ

from generation.health import GPU_CLUSTER
from generation.models import CloudSpend, GenerationRun, StylePreset, WorkerHeartbeat
from generation.services import run_regenerate, run_submit

PRICE = Decimal("0.063")


@pytest.fixture
def cloud(settings):  # type: ignore[no-untyped-def]
    """The cloud on, with gpt-image-1 at its table price and a budget of two images."""
    settings.HOFFDESK_CLOUD_API_KEY = "sk-test-not-used"
    settings.HOFFDESK_CLOUD_MODEL = "gpt-image-1"
    settings.HOFFDESK_CLOUD_SIZE = ""
    settings.HOFFDESK_CLOUD_PRICES = {**settings.HOFFDESK_CLOUD_PRICES, "gpt-image-1": PRICE}
    settings.HOFFDESK_CLOUD_MONTHLY_BUDGET = float(2 * PRICE)
    settings.HOFFDESK_CURRENCY = "USD"
    return settings


def spend() -> CloudSpend:
    from generation.cloud import this_month

    return CloudSpend.objects.get(month=this_month())


@pytest.mark.django_db
@pytest.mark.parametrize("configured", [False, True])
def test_the_button_exists_only_with_a_key_and_shows_the_price_first(editor_client, article, settings, configured):
    settings.HOFFDESK_CLOUD_API_KEY = "sk-test-not-used" if configured else ""
    settings.HOFFDESK_CLOUD_MODEL = "gpt-image-1"
    settings.HOFFDESK_CLOUD_SIZE = ""
    settings.HOFFDESK_CLOUD_MONTHLY_BUDGET = 10.0
    settings.HOFFDESK_CLOUD_PRICES = {**settings.HOFFDESK_CLOUD_PRICES, "gpt-image-1": PRICE}
    page = editor_client.get(article.get_absolute_url()).content.decode()
    posted = editor_client.post(f"/articles/{article.slug}/cloud/", {"count": "1"})
    if not configured:
        assert "Make in the cloud" not in page and 'data-testid="cloud' not in page
        assert posted.status_code == 404 and not GenerationRun.objects.exists()
        return
    assert "Make in the cloud" in page
    assert "gpt-image-1 at 1536\u00d71024: <strong>0.063 USD</strong> an image · 10.00 USD left of 10.00 USD" in page
    assert posted.status_code == 302
    run = GenerationRun.objects.get()
    assert run.runs_in_cloud and run.cloud_cost == PRICE and run.model_profile == "cloud:gpt-image-1"


@pytest.mark.django_db
def test_a_budget_of_two_images_refuses_the_third_saying_what_is_left(
    cloud, article, editor, editor_client, django_capture_on_commit_callbacks
):
    from generation.cloud import CloudBudgetExceeded, cloud_run_submit

    with django_capture_on_commit_callbacks(execute=True):
        first = cloud_run_submit(article=article, count=1, requested_by=editor)
        second = cloud_run_submit(article=article, count=1, requested_by=editor)
    with pytest.raises(CloudBudgetExceeded) as refused:
        cloud_run_submit(article=article, count=1, requested_by=editor)
    message = " ".join(refused.value.messages)
    assert "1 image(s) from gpt-image-1 cost 0.063 USD and 0.00 USD is left of 0.126 USD" in message
    assert GenerationRun.objects.count() == 2 and (spend().spent, spend().images) == (2 * PRICE, 2)
    # Queued on the light cluster: no GPU is needed to call an API.
    assert sorted(OrmQ.objects.values_list("key", flat=True)) == ["light", "light"]
    assert first.steps == 0 and first.base_seed == 0 and second.width == 1536

    # The editor pressing the button sees the same refusal, and nothing is queued.
    page = editor_client.post(f"/articles/{article.slug}/cloud/", {"count": "1"}, follow=True).content.decode()
    assert "0.00 USD is left of 0.126 USD" in page and GenerationRun.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_requests_at_once_never_pass_the_budget_together(cloud, article, editor):
    """One image's price is left and two requests for one image arrive at the same moment: one
    passes, one is refused. On PostgreSQL (scripts/test-postgres.sh) the two really overlap."""
    from generation.cloud import CloudBudgetExceeded, cloud_run_submit, this_month

    for round_ in range(4):
        CloudSpend.objects.update_or_create(month=this_month(), defaults={"spent": PRICE, "images": 1})
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def ask(barrier: threading.Barrier = barrier, outcomes: list[str] = outcomes) -> None:
            try:
                barrier.wait(timeout=30)
                cloud_run_submit(article=article, count=1, requested_by=editor)
                outcomes.append("queued")
            except CloudBudgetExceeded:
                outcomes.append("refused")
            finally:
                connection.close()

        threads = [threading.Thread(target=ask) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(outcomes) == ["queued", "refused"], (round_, outcomes)
        assert spend().spent == 2 * PRICE and spend().images == 2
    assert GenerationRun.objects.filter(cloud_cost=PRICE).count() == 4


@pytest.mark.django_db
def test_a_cloud_run_refuses_the_regenerate_modes_that_need_a_seed(cloud, article, editor):
    from generation.cloud import cloud_run_submit

    source = cloud_run_submit(article=article, count=1, requested_by=editor)
    candidate = source.candidates.create(index=0, seed=0, image="x.png", width=64, height=64, sha256="0" * 64)
    for mode in ("exact", "compose", "seed", "variations", "upscale", "final"):
        with pytest.raises(ValidationError) as refused:
            run_regenerate(source=source, mode=mode, candidate=candidate, requested_by=editor, seed=5)
        message = refused.value.message_dict["mode"][0]
        assert "needs a seed" in message and f"run {source.pk} was made in the cloud (cloud:gpt-image-1)" in message
    # More of it costs money: the button asks for that, showing the price first.
    with pytest.raises(ValidationError) as refused:
        run_regenerate(source=source, mode="more", requested_by=editor)
    assert "press Make in the cloud again" in refused.value.message_dict["mode"][0]
    assert GenerationRun.objects.count() == 1


@pytest.fixture
def fallback_preset(db) -> StylePreset:  # type: ignore[no-untyped-def]
    return StylePreset.objects.create(name="Fallback", slug="fallback", cloud_fallback=True)


@pytest.mark.django_db
def test_a_queued_run_moves_to_the_cloud_when_no_gpu_worker_was_seen(cloud, article, editor, fallback_preset):
    from generation.cloud import cloud_fallback_sweep

    cloud.HOFFDESK_CLOUD_AFTER_MINUTES = 30
    run = run_submit(article=article, preset=fallback_preset, count=1, requested_by=editor)
    other = run_submit(article=article, count=1, requested_by=editor)  # no fallback: stays local
    beat = WorkerHeartbeat.objects.create(worker="gpu:1", cluster=GPU_CLUSTER, seen_at=timezone.now())
    assert cloud_fallback_sweep()["moved"] == []  # a GPU worker is there: nothing moves

    WorkerHeartbeat.objects.filter(pk=beat.pk).update(seen_at=timezone.now() - timedelta(minutes=31))
    assert cloud_fallback_sweep()["moved"] == [run.pk]
    run.refresh_from_db()
    other.refresh_from_db()
    assert run.runs_in_cloud and run.status == "queued" and run.cloud_cost == PRICE
    assert run.engine_note.startswith("No GPU worker was seen for 31 minutes: made in the cloud by gpt-image-1")
    assert not other.runs_in_cloud
    assert cloud_fallback_sweep()["moved"] == []  # moved once


@pytest.mark.django_db
def test_a_run_that_failed_twice_is_made_again_in_the_cloud(cloud, article, editor, fallback_preset):
    from generation.cloud import cloud_fallback_sweep

    WorkerHeartbeat.objects.create(worker="gpu:1", cluster=GPU_CLUSTER, seen_at=timezone.now())
    first = run_submit(article=article, preset=fallback_preset, count=1, requested_by=editor)
    GenerationRun.objects.filter(pk=first.pk).update(status="failed", finished_at=timezone.now(), error="CUDA OOM")
    assert cloud_fallback_sweep()["remade"] == []  # failed once: an editor may try again
    second = run_submit(article=article, preset=fallback_preset, count=1, requested_by=editor)
    GenerationRun.objects.filter(pk=second.pk).update(status="failed", finished_at=timezone.now(), error="CUDA OOM")

    remade = cloud_fallback_sweep()["remade"]
    assert len(remade) == 1
    child = GenerationRun.objects.get(pk=remade[0])
    assert child.runs_in_cloud and child.parent_id == second.pk and child.prompt == second.prompt
    assert "failed twice" in child.engine_note
    assert cloud_fallback_sweep()["remade"] == []  # once
