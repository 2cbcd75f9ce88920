"""The counts stay true: the list rows' and the article header's counts refresh without a reload."""

from __future__ import annotations

import pytest
from django.urls import reverse

from gallery.models import Article
from gallery.services import candidate_review
from tests.gallery.test_review import make_run

pytestmark = pytest.mark.django_db


def test_the_list_polls_for_its_rows_counts_and_gets_them_out_of_band(editor_client, article, editor) -> None:
    other = Article.objects.create(slug="other", title="Other")
    first, *_ = make_run(article, count=3).candidates.all()
    page = editor_client.get(reverse("gallery:article_list")).content.decode()
    assert 'data-testid="list-counts-poll"' in page and 'id="approved-count-flux-on-a-3080"' in page

    candidate_review(candidate=first, action="approve", by=editor)
    url = reverse("gallery:article_list_counts")
    response = editor_client.get(url, {"s": [article.slug, other.slug]}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200 and body.count('hx-swap-oob="true"') == 4
    assert 'id="waiting-count-flux-on-a-3080" data-testid="waiting-count" hx-swap-oob="true">2 waiting' in body
    assert 'id="approved-count-flux-on-a-3080" data-testid="approved-count" hx-swap-oob="true">1 approved' in body
    assert 'id="waiting-count-other" data-testid="waiting-count" hx-swap-oob="true">0 waiting' in body


def test_the_list_counts_refuse_too_many_slugs(editor_client) -> None:
    response = editor_client.get(reverse("gallery:article_list_counts"), {"s": [f"a{i}" for i in range(101)]})
    assert response.status_code == 400 and b"s:" in response.content


def test_the_article_header_counts_poll_and_follow_decisions(editor_client, article, editor) -> None:
    first, second, _ = make_run(article, count=3).candidates.all()
    page = editor_client.get(article.get_absolute_url()).content.decode()
    assert 'data-testid="article-counts"' in page and "3 waiting" in page

    candidate_review(candidate=first, action="approve", by=editor)
    candidate_review(candidate=second, action="reject", by=editor)
    body = editor_client.get(reverse("gallery:article_counts", args=[article.slug])).content.decode()
    assert "1 waiting" in body and "1 approved" in body and "1 rejected" in body and 'hx-trigger="every' in body
