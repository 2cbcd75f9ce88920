"""Candidates: read with their publication, the PNG for the same token, approve, reject, publish."""

from __future__ import annotations

import io

import pytest
from django_q.models import OrmQ
from PIL import Image

from gallery.models import Publication
from generation.models import Candidate
from tests.api.conftest import ApiClient, assert_error, seeded_candidate

pytestmark = pytest.mark.django_db

HERO_GENERATION_SIZE = (1216, 640)  # gallery.renditions.suggested_generation_size((1200, 630))


def test_get_candidate_shows_its_review_state_and_no_publication(api, article) -> None:
    candidate = seeded_candidate(article)
    body = api.get(f"/api/v1/candidates/{candidate.pk}").json()
    assert body == {
        "id": candidate.pk,
        "run": candidate.run_id,
        "article": article.slug,
        "seed": 7,
        "status": "pending",
        "image_url": f"http://testserver/api/v1/candidates/{candidate.pk}/image",
        "width": 64,
        "height": 64,
        "sha256": candidate.sha256,
        "alt_text": "",
        "publication": None,
    }


def test_the_image_url_serves_the_png_to_the_same_token_only(api, client, article) -> None:
    candidate = seeded_candidate(article)
    url = api.get(f"/api/v1/candidates/{candidate.pk}").json()["image_url"]
    response = api.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(b"".join(response.streaming_content)))
    assert image.size == (64, 64)
    assert_error(client.get(url), 401, "Authorization")


def test_an_unknown_candidate_answers_404(api) -> None:
    for suffix in ("", "/image"):
        assert_error(api.get(f"/api/v1/candidates/424242{suffix}"), 404, "id")
    for action in ("approve", "reject"):
        assert_error(api.post(f"/api/v1/candidates/424242/{action}"), 404, "id")
    assert_error(api.post("/api/v1/candidates/424242/publish", {"alt_text": "A"}), 404, "id")


def test_approve_then_reject_with_a_reason(api, article) -> None:
    candidate = seeded_candidate(article)
    response = api.post(f"/api/v1/candidates/{candidate.pk}/approve")
    assert response.status_code == 200 and response.json()["status"] == "approved"
    response = api.post(f"/api/v1/candidates/{candidate.pk}/reject", {"reason": "Too busy"})
    assert response.status_code == 200 and response.json()["status"] == "rejected"
    assert candidate.events.order_by("-pk").values_list("reason", flat=True)[0] == "Too busy"


def test_approving_twice_answers_409_naming_the_state(api, article) -> None:
    candidate = seeded_candidate(article)
    assert api.post(f"/api/v1/candidates/{candidate.pk}/approve", {}).status_code == 200
    body = assert_error(api.post(f"/api/v1/candidates/{candidate.pk}/approve"), 409, "status")
    assert "approved" in body["detail"]


@pytest.mark.parametrize(("payload", "field"), [({"reason": 5}, "reason"), ({"why": "x"}, "why")])
def test_an_invalid_review_field_answers_400(api, article, payload, field) -> None:
    candidate = seeded_candidate(article)
    assert_error(api.post(f"/api/v1/candidates/{candidate.pk}/reject", payload), 400, field)
    candidate.refresh_from_db()
    assert candidate.review_status == "pending"


def test_publishing_an_approved_candidate_answers_202_and_queues_one_light_task(api, article, editor) -> None:
    candidate = seeded_candidate(article, size=HERO_GENERATION_SIZE)
    candidate.approve(editor)
    payload = {"alt_text": "A lighthouse", "focal_point": {"x": 0.25, "y": 0.75}}
    response = api.post(f"/api/v1/candidates/{candidate.pk}/publish", payload)
    assert response.status_code == 202, response.content
    publication = Publication.objects.get()
    assert (publication.alt_text, publication.focal_x, publication.focal_y) == ("A lighthouse", 0.25, 0.75)
    assert response.json()["publication"] == {"status": "publishing", "urls": {}, "error": ""}
    assert response.json()["alt_text"] == "A lighthouse"
    assert OrmQ.objects.count() == 1


def test_publishing_a_pending_candidate_answers_409_and_queues_nothing(api, article) -> None:
    candidate = seeded_candidate(article, size=HERO_GENERATION_SIZE)
    body = assert_error(api.post(f"/api/v1/candidates/{candidate.pk}/publish", {"alt_text": "A"}), 409, "status")
    assert "approve it first" in body["detail"]
    assert not Publication.objects.exists() and not OrmQ.objects.exists()


def test_publishing_a_candidate_too_small_for_the_hero_answers_409_saying_what_to_generate(
    api, article, editor
) -> None:
    candidate = seeded_candidate(article)
    candidate.approve(editor)
    body = assert_error(api.post(f"/api/v1/candidates/{candidate.pk}/publish", {"alt_text": "A"}), 409, "candidate")
    assert "1216x640" in body["detail"]
    assert not Publication.objects.exists() and not OrmQ.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "alt_text"),
        ({"alt_text": "   "}, "alt_text"),
        ({"alt_text": "a" * 501}, "alt_text"),
        ({"alt_text": 5}, "alt_text"),
        ({"alt_text": "A", "focal_point": {"x": 1.5, "y": 0.5}}, "focal_point"),
        ({"alt_text": "A", "focal_point": {"x": 0.5}}, "focal_point.y"),
        ({"alt_text": "A", "focal_point": [0.5, 0.5]}, "focal_point"),
        ({"alt_text": "A", "focal": {"x": 0.5, "y": 0.5}}, "focal"),
    ],
)
def test_every_invalid_publish_field_answers_400_naming_it_and_queues_nothing(
    api, article, editor, payload, field
) -> None:
    candidate = seeded_candidate(article, size=HERO_GENERATION_SIZE)
    candidate.approve(editor)
    assert_error(api.post(f"/api/v1/candidates/{candidate.pk}/publish", payload), 400, field)
    assert not Publication.objects.exists() and not OrmQ.objects.exists()
    assert Candidate.objects.get(pk=candidate.pk).review_status == "approved"


def test_a_published_candidate_shows_its_publication_with_absolute_urls(api, article, editor) -> None:
    candidate = seeded_candidate(article)
    candidate.approve(editor)
    Publication.objects.create(
        article=article, candidate=candidate, alt_text="A fox", status=Publication.Status.PUBLISHED,
        urls={"hero.jpg": "/published/x/abc-hero.jpg", "hero.webp": "https://cdn.example/x/abc-hero.webp"},
    )  # fmt: skip
    body = ApiClient(api.token).get(f"/api/v1/candidates/{candidate.pk}").json()
    assert body["publication"] == {
        "status": "published",
        "urls": {
            "hero.jpg": "http://testserver/published/x/abc-hero.jpg",
            "hero.webp": "https://cdn.example/x/abc-hero.webp",
        },
        "error": "",
    }
    assert body["alt_text"] == "A fox"


def test_a_reject_reason_longer_than_the_history_keeps_answers_400_and_decides_nothing(api, article) -> None:
    """It used to be cut to 1,000 characters without a word; now it is refused naming the field."""
    candidate = seeded_candidate(article)
    response = api.post(f"/api/v1/candidates/{candidate.pk}/reject", {"reason": "x" * 1001})
    assert_error(response, 400, "reason")
    assert Candidate.objects.get(pk=candidate.pk).review_status == "pending"
