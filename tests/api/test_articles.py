"""POST /api/v1/articles creates or updates by slug; GET shows the article and its hero."""

from __future__ import annotations

import pytest

from gallery.models import Article, Publication
from tests.api.conftest import assert_error, seeded_candidate

pytestmark = pytest.mark.django_db


def test_posting_a_new_slug_creates_the_article_with_201(api) -> None:
    payload = {"slug": "flux-nf4", "title": "FLUX in 4 bits", "summary": "How.", "content_type": "tutorial",
               "tone": "dry", "series": "Local AI"}  # fmt: skip
    response = api.post("/api/v1/articles", payload)
    assert response.status_code == 201, response.content
    body = response.json()
    assert {k: body[k] for k in payload} == payload
    assert body["hero"] is None
    assert Article.objects.get(slug="flux-nf4").series == "Local AI"


def test_posting_an_existing_slug_updates_only_the_fields_given_with_200(api, article) -> None:
    response = api.post("/api/v1/articles", {"slug": article.slug, "title": "A new title"})
    assert response.status_code == 200, response.content
    article.refresh_from_db()
    assert article.title == "A new title"
    assert article.tone == "curious" and article.content_type == "technical"  # kept
    assert Article.objects.count() == 1


def test_a_new_article_without_content_type_gets_the_default(api) -> None:
    assert api.post("/api/v1/articles", {"slug": "plain", "title": "Plain"}).json()["content_type"] == "technical"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"title": "No slug"}, "slug"),
        ({"slug": "no-title"}, "title"),
        ({"slug": "blank-title", "title": "  "}, "title"),
        ({"slug": "has spaces", "title": "T"}, "slug"),
        ({"slug": "", "title": "T"}, "slug"),
        ({"slug": "x" * 201, "title": "T"}, "slug"),
        ({"slug": "long-title", "title": "T" * 301}, "title"),
        ({"slug": "bad-type", "title": "T", "content_type": "poem"}, "content_type"),
        ({"slug": "bad-tone", "title": "T", "tone": "t" * 101}, "tone"),
        ({"slug": "bad-series", "title": "T", "series": "s" * 201}, "series"),
        ({"slug": "num-title", "title": 5}, "title"),
        ({"slug": "list-summary", "title": "T", "summary": ["a"]}, "summary"),
        ({"slug": "typo", "title": "T", "sumary": "oops"}, "sumary"),
    ],
)
def test_every_invalid_field_answers_400_naming_it_and_writes_nothing(api, payload, field) -> None:
    assert_error(api.post("/api/v1/articles", payload), 400, field)
    assert not Article.objects.exists()


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"a string"', ""])
def test_a_body_that_is_not_a_json_object_answers_400(api, raw) -> None:
    response = api.post("/api/v1/articles", raw=raw)
    assert response.status_code == 400, response.content
    assert response.json()["detail"]


def test_get_shows_the_article(api, article) -> None:
    body = api.get(f"/api/v1/articles/{article.slug}").json()
    assert body["slug"] == article.slug and body["title"] == article.title and body["hero"] is None


def test_an_unknown_slug_answers_404_naming_it(api) -> None:
    body = assert_error(api.get("/api/v1/articles/no-such-article"), 404, "slug")
    assert "no-such-article" in body["detail"]


def test_the_hero_shows_its_candidate_and_absolute_public_urls(api, article, editor) -> None:
    candidate = seeded_candidate(article)
    candidate.approve(editor)
    Publication.objects.create(
        article=article, candidate=candidate, alt_text="A", status=Publication.Status.PUBLISHED,
        urls={"hero.webp": "/published/flux-on-a-3080/abc-hero.webp"},
    )  # fmt: skip
    Article.objects.filter(pk=article.pk).update(hero_candidate=candidate)
    hero = api.get(f"/api/v1/articles/{article.slug}").json()["hero"]
    assert hero == {
        "candidate": candidate.pk,
        "urls": {"hero.webp": "http://testserver/published/flux-on-a-3080/abc-hero.webp"},
    }
