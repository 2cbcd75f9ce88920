"""The publish page and the full view offer Make hero size on a candidate too small for the hero,
and the button queues the hires-only run from that candidate."""

from __future__ import annotations

import pytest
from django.urls import reverse

from generation.models import Candidate, GenerationRun
from tests.gallery.test_publishing import approved_candidate, empty_publish_folder  # noqa: F401

pytestmark = pytest.mark.django_db


def small(article, editor, size: tuple[int, int] = (512, 512)) -> Candidate:  # type: ignore[no-untyped-def]
    candidate = approved_candidate(article, editor)
    GenerationRun.objects.filter(pk=candidate.run_id).update(model_profile="sdxl-turbo", width=size[0], height=size[1])
    Candidate.objects.filter(pk=candidate.pk).update(width=size[0], height=size[1])
    return Candidate.objects.select_related("run").get(pk=candidate.pk)


@pytest.mark.parametrize("url_name", ["gallery:candidate_publish", "gallery:candidate_detail"])
def test_a_small_candidate_is_offered_make_hero_size(editor_client, editor, article, url_name) -> None:
    candidate = small(article, editor)
    html = editor_client.get(reverse(url_name, args=[candidate.pk])).content.decode()
    assert 'data-testid="make-hero-size"' in html and "This image is 512x512" in html
    assert 'name="mode" value="upscale"' in html and "Make hero size</button>" in html


def test_a_hero_size_candidate_is_offered_nothing(editor_client, editor, article) -> None:
    candidate = approved_candidate(article, editor)
    html = editor_client.get(reverse("gallery:candidate_publish", args=[candidate.pk])).content.decode()
    assert 'data-testid="make-hero-size"' not in html


def test_a_candidate_one_pass_cannot_save_gets_the_advice_but_no_button(editor_client, editor, article) -> None:
    candidate = small(article, editor, size=(128, 128))
    html = editor_client.get(reverse("gallery:candidate_publish", args=[candidate.pk])).content.decode()
    assert "This image is 128x128" in html and "Regenerate it at 1216x640" in html
    assert 'value="upscale"' not in html


def test_the_button_queues_one_hires_only_run_from_that_candidate(
    editor_client, editor, article, django_capture_on_commit_callbacks
) -> None:
    candidate = small(article, editor)
    with django_capture_on_commit_callbacks(execute=True):
        response = editor_client.post(reverse("gallery:candidate_regenerate", args=[candidate.pk]), {"mode": "upscale"})
    assert response.status_code == 302
    run = GenerationRun.objects.exclude(pk=candidate.run_id).get()
    assert (run.regenerate_mode, run.source_candidate_id, run.parent_id) == ("upscale", candidate.pk, candidate.run_id)
    assert run.count == 1 and run.base_seed == candidate.seed
    assert run.output_size[0] >= 1216 and run.output_size[1] >= 640
