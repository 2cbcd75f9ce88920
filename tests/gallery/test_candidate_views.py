"""The full view, the PNG download, compare, and the queued run's place in the queue."""

from __future__ import annotations

import pytest
from django.urls import reverse

from gallery.models import Article
from generation.services import run_submit
from tests.gallery.test_review import make_run

pytestmark = pytest.mark.django_db


def test_full_view_shows_the_whole_recipe_with_copy_and_download(editor_client, article) -> None:
    run = make_run(article, count=1, seed=321)
    run.negative_prompt = "blurry, watermark"
    run.save()
    candidate = run.candidates.get()
    body = editor_client.get(reverse("gallery:candidate_detail", args=[candidate.pk])).content.decode()
    for text in [run.prompt, "blurry, watermark", "tiny-sd", "64\u00d764", "<dt>Steps</dt><dd>2</dd>", "1.0", "321"]:
        assert text in body, text
    assert 'data-copy="321"' in body
    assert f'href="/candidates/{candidate.pk}/image.png?download=1"' in body
    assert f'src="/candidates/{candidate.pk}/image.png"' in body  # the full view shows the PNG itself


def test_the_lightbox_gets_only_the_full_view_fragment(editor_client, article) -> None:
    candidate = make_run(article, count=1).candidates.get()
    url = reverse("gallery:candidate_detail", args=[candidate.pk])
    fragment = editor_client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert 'data-testid="full-view"' in fragment and "<html" not in fragment


def test_download_saves_the_png_under_a_name_that_says_what_it_is(editor_client, article) -> None:
    candidate = make_run(article, count=1, seed=55).candidates.get()
    response = editor_client.get(reverse("gallery:candidate_image", args=[candidate.pk]) + "?download=1")
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == f'attachment; filename="{article.slug}-run{candidate.run_id}-seed55.png"'
    assert b"".join(response.streaming_content).startswith(b"\x89PNG")


def test_compare_shows_two_to_four_candidates_of_the_article_side_by_side(editor_client, article) -> None:
    ids = list(make_run(article, count=5).candidates.values_list("pk", flat=True))
    other = make_run(Article.objects.create(slug="other", title="Other"), count=1).candidates.get()
    url = reverse("gallery:compare", args=[article.slug])

    response = editor_client.get(url, {"c": ids[:3]})
    assert response.status_code == 200
    assert response.content.count(b"<figure>") == 3 and b".png" not in response.content

    assert editor_client.get(url, {"c": ids[:1]}).status_code == 400
    assert b"two to four" in editor_client.get(url, {"c": ids}).content  # five is too many
    assert editor_client.get(url, {"c": [*ids[:4], other.pk]}).content.count(b"<figure>") == 4  # not the other's


def test_a_queued_run_shows_its_place_in_the_queue(editor_client, article) -> None:
    first = run_submit(article=article, model="tiny-sd", seed=1, count=1)
    second = run_submit(article=article, model="tiny-sd", seed=2, count=1)
    card = editor_client.get(reverse("gallery:run_card", args=[second.pk]), headers={"HX-Request": "true"})
    assert b"2 in the queue" in card.content
    card = editor_client.get(reverse("gallery:run_card", args=[first.pk]), headers={"HX-Request": "true"})
    assert b"1 (next) in the queue" in card.content
    first.claim(max_attempts=3)
    page = editor_client.get(article.get_absolute_url()).content
    assert b"1 (next) in the queue" in page and b"0 / 2" not in page  # the running one shows steps


def test_a_running_run_shows_step_total_and_elapsed_time(editor_client, article) -> None:
    run = run_submit(article=article, model="tiny-sd", seed=1, count=1, steps=10)
    run.claim(max_attempts=3)
    run.record_progress(4, 10)
    card = editor_client.get(reverse("gallery:run_card", args=[run.pk]), headers={"HX-Request": "true"}).content
    assert b"4 / 10 steps" in card and b" s" in card and b'hx-trigger="every 1s"' in card
