"""Star ratings (0-5): the service, its view, the tile and history that show them, the list filter."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from gallery.models import Article
from gallery.ratings import candidate_rate
from generation.models import Candidate, ReviewEvent
from tests.gallery.test_review import HTMX, make_run

pytestmark = pytest.mark.django_db


def rate(client, candidate: Candidate, rating: str, **headers: str):  # type: ignore[no-untyped-def]
    return client.post(reverse("gallery:candidate_rate", args=[candidate.pk]), {"rating": rating}, headers=headers)


def test_it_rates_and_records_the_rating_in_one_event(editor, article) -> None:
    candidate = make_run(article).candidates.first()
    assert candidate is not None
    event = candidate_rate(candidate=candidate, rating=4, by=editor)
    candidate.refresh_from_db()
    assert candidate.rating == 4 and candidate.review_status == "pending"
    assert event is not None and (event.action, event.rating, event.actor) == ("rate", 4, editor)
    assert (event.from_status, event.to_status) == ("pending", "pending")


def test_it_writes_nothing_when_the_rating_is_already_that(editor, article) -> None:
    candidate = make_run(article).candidates.first()
    assert candidate is not None
    candidate_rate(candidate=candidate, rating=3, by=editor)
    assert candidate_rate(candidate=candidate, rating=3, by=editor) is None
    assert ReviewEvent.objects.count() == 1


@pytest.mark.parametrize("bad", [-1, 6, 42])
def test_it_refuses_a_rating_outside_zero_to_five_naming_the_field(editor, article, bad: int) -> None:
    candidate = make_run(article).candidates.first()
    assert candidate is not None
    with pytest.raises(ValidationError) as caught:
        candidate_rate(candidate=candidate, rating=bad, by=editor)
    assert "rating" in caught.value.message_dict
    assert not ReviewEvent.objects.exists() and Candidate.objects.get(pk=candidate.pk).rating == 0


def test_the_view_answers_the_tile_with_its_stars_and_a_trigger(editor_client, article) -> None:
    candidate = make_run(article).candidates.first()
    assert candidate is not None
    response = rate(editor_client, candidate, "5", **HTMX)
    assert response.status_code == 200 and response["HX-Trigger"] == "review-changed"
    html = response.content.decode()
    assert f'id="candidate-{candidate.pk}"' in html and 'data-testid="rating" data-rating="5"' in html


def test_the_view_refuses_bad_input_with_a_message_naming_the_field(editor_client, article) -> None:
    candidate = make_run(article).candidates.first()
    assert candidate is not None
    for bad in ["seven", "", "9"]:
        response = rate(editor_client, candidate, bad, **HTMX)
        assert response.status_code == 400 and "rating" in response.content.decode().lower(), bad
    assert Candidate.objects.get(pk=candidate.pk).rating == 0 and not ReviewEvent.objects.exists()


def test_an_onlooker_may_not_rate(client, onlooker, article) -> None:
    candidate = make_run(article).candidates.first()
    assert candidate is not None
    client.force_login(onlooker)
    assert rate(client, candidate, "4", **HTMX).status_code == 403
    assert Candidate.objects.get(pk=candidate.pk).rating == 0


def test_without_htmx_it_goes_back_to_the_candidate(editor_client, article) -> None:
    candidate = make_run(article).candidates.first()
    assert candidate is not None
    response = rate(editor_client, candidate, "2")
    assert response.status_code == 302 and response["Location"].endswith(f"#candidate-{candidate.pk}")


def test_the_history_and_full_view_say_the_rating(editor_client, editor, article) -> None:
    candidate = make_run(article).candidates.first()
    assert candidate is not None
    candidate_rate(candidate=candidate, rating=4, by=editor)
    page = editor_client.get(article.get_absolute_url()).content.decode()
    assert "rated it 4★" in page and 'data-rating="4"' in page
    full = editor_client.get(reverse("gallery:candidate_detail", args=[candidate.pk])).content.decode()
    assert "rated it 4★" in full and 'data-testid="rating" data-rating="4"' in full


def test_the_list_filter_finds_articles_rated_four_or_more(editor_client, editor, article) -> None:
    three = Article.objects.create(slug="three", title="Three stars", summary=".")
    four = make_run(article).candidates.first()
    other = make_run(three, seed=50).candidates.first()
    assert four is not None and other is not None
    candidate_rate(candidate=four, rating=4, by=editor)
    candidate_rate(candidate=other, rating=3, by=editor)
    page = editor_client.get("/?filter=rated").content.decode()
    assert article.title in page and "Three stars" not in page and "Rated 4 or more" in page


def test_the_article_page_sorts_each_runs_candidates_best_rated_first(editor_client, editor, article) -> None:
    first, second, third = make_run(article, count=3).candidates.order_by("index")
    candidate_rate(candidate=third, rating=5, by=editor)
    candidate_rate(candidate=second, rating=2, by=editor)
    page = editor_client.get(article.get_absolute_url(), {"order": "rating"}).content.decode()
    shown = [page.index(f'id="candidate-{c.pk}"') for c in (third, second, first)]
    assert shown == sorted(shown) and "Best rated first" in page
    plain = editor_client.get(article.get_absolute_url()).content.decode()
    assert plain.index(f'id="candidate-{first.pk}"') < plain.index(f'id="candidate-{third.pk}"')
