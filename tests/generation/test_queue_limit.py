"""One account cannot fill the GPU queue."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.urls import reverse

from generation.models import GenerationRun
from generation.services import QueueLimitReached, run_submit
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_a_user_at_the_limit_is_refused_and_nothing_is_queued(article, editor, settings) -> None:
    settings.HOFFDESK_USER_QUEUE_LIMIT = 2
    first = run_submit(article=article, model="tiny-sd", seed=1, count=1, requested_by=editor)
    run_submit(article=article, model="tiny-sd", seed=2, count=1, requested_by=editor)
    with pytest.raises(QueueLimitReached, match="the limit is 2 per person"):
        run_submit(article=article, model="tiny-sd", seed=3, count=1, requested_by=editor)
    assert GenerationRun.objects.count() == 2

    other = make_user("other", "editors")  # someone else is not affected
    run_submit(article=article, model="tiny-sd", seed=4, count=1, requested_by=other)

    first.claim(max_attempts=3)
    first.succeed(load_seconds=0, gpu_seconds=0)  # a finished run frees a place
    run_submit(article=article, model="tiny-sd", seed=5, count=1, requested_by=editor)
    assert GenerationRun.objects.filter(requested_by=editor).count() == 3


def test_the_generate_form_shows_the_limit_as_a_clear_message(editor_client, editor, article, settings) -> None:
    settings.HOFFDESK_USER_QUEUE_LIMIT = 1
    run_submit(article=article, model="tiny-sd", seed=1, count=1, requested_by=editor)
    response = editor_client.post(reverse("gallery:run_create", args=[article.slug]), {"model": "tiny-sd"})
    assert response.status_code == 400
    assert b"You already have 1 runs waiting or running" in response.content
    assert GenerationRun.objects.count() == 1


def test_zero_means_no_limit(article, editor, settings) -> None:
    settings.HOFFDESK_USER_QUEUE_LIMIT = 0
    for seed in range(12):
        run_submit(article=article, model="tiny-sd", seed=seed, count=1, requested_by=editor)
    assert GenerationRun.objects.count() == 12


@pytest.mark.django_db(transaction=True)
def test_submits_racing_at_the_limit_queue_only_up_to_it(article, editor, settings) -> None:
    """Four submits released together by one user with one place left: the user's row is locked
    before counting, so exactly one is queued and three are refused (on SQLite and PostgreSQL)."""
    settings.HOFFDESK_USER_QUEUE_LIMIT = 2
    run_submit(article=article, model="tiny-sd", seed=1, count=1, requested_by=editor)
    start = threading.Barrier(4)
    outcomes: list[str] = []

    def submit(seed: int) -> None:
        try:
            start.wait()
            run_submit(article=article, model="tiny-sd", seed=seed, count=1, requested_by=editor)
            outcomes.append("queued")
        except QueueLimitReached:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(10 + i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["queued", "refused", "refused", "refused"]
    assert GenerationRun.objects.filter(requested_by=editor).count() == 2
