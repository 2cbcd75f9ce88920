"""Review on the article page: decisions with their history, races between editors, the hero."""

from __future__ import annotations

import hashlib
import io
import threading

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.urls import reverse
from PIL import Image

from gallery.models import Article
from gallery.services import ReviewConflict, article_set_hero, candidate_review
from generation.models import Candidate, GenerationRun, ReviewEvent, candidate_storage
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def make_run(article: Article, count: int = 2, seed: int = 10, size: int = 64) -> GenerationRun:
    """A succeeded run with real PNG files, as the worker leaves it."""
    run = GenerationRun.objects.create(
        article=article, model_profile="tiny-sd", prompt=f"a lighthouse {seed}", width=size, height=size, steps=2,
        guidance=1.0, base_seed=seed, count=count, status=GenerationRun.Status.SUCCEEDED,
    )  # fmt: skip
    for index in range(count):
        buffer = io.BytesIO()
        Image.new("RGB", (size, size), (seed % 256, index * 40, 120)).save(buffer, format="PNG")
        data = buffer.getvalue()
        name = candidate_storage().save(f"runs/{run.pk:06d}/{index:02d}-seed{seed + index}.png", ContentFile(data))
        Candidate.objects.create(
            run=run, index=index, seed=seed + index, image=name, width=size, height=size,
            sha256=hashlib.sha256(data).hexdigest(),
        )  # fmt: skip
    return run


def review(client, candidate: Candidate, action: str, expected: str, **extra: str):  # type: ignore[no-untyped-def]
    data = {"action": action, "expected": expected, **extra}
    return client.post(reverse("gallery:candidate_review", args=[candidate.pk]), data, headers=HTMX)


def test_approve_reject_undo_each_swap_the_tile_and_keep_an_event(editor_client, editor, article) -> None:
    first, second = make_run(article).candidates.all()
    response = review(editor_client, first, "approve", "pending")
    assert response.status_code == 200 and response["HX-Trigger"] == "review-changed"
    assert b'id="candidate-%d"' % first.pk in response.content and b">Approved<" in response.content
    review(editor_client, second, "reject", "pending", reason="  the hands are wrong ")
    review(editor_client, first, "undo", "approved")

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.review_status == "pending" and first.reviewed_by is None
    assert second.review_status == "rejected" and second.reviewed_by == editor
    events = list(ReviewEvent.objects.order_by("id").values_list("candidate", "action", "from_status", "to_status"))
    assert events == [
        (first.pk, "approve", "pending", "approved"),
        (second.pk, "reject", "pending", "rejected"),
        (first.pk, "undo", "approved", "pending"),
    ]
    assert ReviewEvent.objects.get(action="reject").reason == "the hands are wrong"
    page = editor_client.get(article.get_absolute_url()).content.decode()
    assert page.count('data-testid="history-event"') == 3 and "the hands are wrong" in page


def test_a_decision_on_a_state_another_editor_changed_shows_the_current_state_and_writes_nothing(
    editor_client, article
) -> None:
    candidate = make_run(article, count=1).candidates.get()
    other = make_user("other-editor", "editors")
    candidate_review(candidate=candidate, action="reject", by=other)

    response = review(editor_client, candidate, "approve", "pending")
    assert response.status_code == 200
    assert b"now rejected by other-editor" in response.content and b">Rejected<" in response.content
    candidate.refresh_from_db()
    assert candidate.review_status == "rejected" and ReviewEvent.objects.count() == 1


def test_an_unknown_action_is_a_clear_400_and_changes_nothing(editor_client, article) -> None:
    candidate = make_run(article, count=1).candidates.get()
    response = editor_client.post(reverse("gallery:candidate_review", args=[candidate.pk]), {"action": "delete"})
    assert response.status_code == 400
    candidate.refresh_from_db()
    assert candidate.review_status == "pending" and not ReviewEvent.objects.exists()


def test_only_an_approved_candidate_becomes_the_hero_and_undoing_it_clears_the_hero(
    editor_client, editor, article
) -> None:
    first, second = make_run(article).candidates.all()
    response = editor_client.post(reverse("gallery:candidate_hero", args=[second.pk]), headers=HTMX)
    article.refresh_from_db()
    assert article.hero_candidate is None and "HX-Refresh" in response

    review(editor_client, first, "approve", "pending")
    editor_client.post(reverse("gallery:candidate_hero", args=[first.pk]), headers=HTMX)
    article.refresh_from_db()
    assert article.hero_candidate == first
    assert ReviewEvent.objects.filter(action="hero", candidate=first).count() == 1
    page = editor_client.get(article.get_absolute_url()).content.decode()
    assert page.count('data-testid="hero-badge"') == 1

    review(editor_client, first, "undo", "approved")
    article.refresh_from_db()
    assert article.hero_candidate is None


def test_the_hero_must_belong_to_the_article(editor, article) -> None:
    other = Article.objects.create(slug="other", title="Other")
    candidate = make_run(other, count=1).candidates.get()
    candidate.approve(editor)
    with pytest.raises(Exception, match="another article"):
        article_set_hero(article=article, candidate=candidate, by=editor)


@pytest.mark.django_db(transaction=True)
def test_two_editors_approving_and_rejecting_at_once_record_exactly_one_decision(article) -> None:
    candidate = make_run(article, count=1).candidates.get()
    alice, bob = make_user("alice", "editors"), make_user("bob", "editors")
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def decide(user, action: str) -> None:  # type: ignore[no-untyped-def]
        try:
            mine = Candidate.objects.get(pk=candidate.pk)
            barrier.wait()
            candidate_review(candidate=mine, action=action, by=user, expected="pending")
            outcomes[action] = "won"
        except ReviewConflict:
            outcomes[action] = "lost"
        finally:
            connection.close()

    for _ in range(5):  # several rounds: each one a fresh race from pending
        Candidate.objects.filter(pk=candidate.pk).update(review_status="pending", reviewed_by=None)
        ReviewEvent.objects.all().delete()
        outcomes.clear()
        threads = [
            threading.Thread(target=decide, args=(alice, "approve")),
            threading.Thread(target=decide, args=(bob, "reject")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(outcomes.values()) == ["lost", "won"], outcomes
        winner = next(action for action, outcome in outcomes.items() if outcome == "won")
        candidate.refresh_from_db()
        assert candidate.review_status == {"approve": "approved", "reject": "rejected"}[winner]
        assert list(ReviewEvent.objects.values_list("action", flat=True)) == [winner]


def test_an_unknown_action_without_htmx_answers_400_saying_what_is_wrong(editor_client, article) -> None:
    candidate = make_run(article, count=1).candidates.get()
    response = editor_client.post(reverse("gallery:candidate_review", args=[candidate.pk]), {"action": "delete"})
    assert response.status_code == 400
    assert b"action must be one of approve, reject, undo, not 'delete'" in response.content
