"""The minimal dashboard: login, article list, article page, Generate, run card, images."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django_q.models import OrmQ

from generation.models import Candidate, GenerationRun, candidate_storage
from generation.services import run_submit

pytestmark = pytest.mark.django_db


def test_login_page_renders_and_logs_in(client, editor) -> None:
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"username": "editor", "password": "editor-pass-123"})
    assert response.status_code == 302 and response["Location"] == "/"


def test_demo_mode_says_images_are_placeholders(editor_client, article) -> None:
    response = editor_client.get(article.get_absolute_url())
    assert b"images are placeholders" in response.content
    assert b"random-weight" in response.content


def test_generate_queues_a_run_and_returns_to_the_article(
    editor_client, article, editor, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = editor_client.post(
            reverse("gallery:run_create", args=[article.slug]),
            {"model": "tiny-sd", "count": "3", "seed": "99", "prompt": ""},
        )
    assert response.status_code == 302 and response["Location"] == article.get_absolute_url()
    run = GenerationRun.objects.get()
    assert (run.count, run.base_seed, run.requested_by) == (3, 99, editor)
    assert article.title in run.prompt
    assert OrmQ.objects.count() == 1


def test_generate_with_bad_values_shows_form_errors_and_queues_nothing(editor_client, article) -> None:
    response = editor_client.post(
        reverse("gallery:run_create", args=[article.slug]),
        {"model": "tiny-sd", "count": "20", "seed": "-3", "width": "100"},
    )
    assert response.status_code == 400
    content = response.content.decode()
    assert 'data-field="count"' in content and "count must be between 1 and 8" in content
    assert 'data-field="seed"' in content and "seed must be between 0 and 4294967295" in content
    assert 'data-field="width"' in content
    assert GenerationRun.objects.count() == 0 and OrmQ.objects.count() == 0


def test_running_card_polls_and_finished_card_stops(editor_client, article) -> None:
    run = run_submit(article=article, model="tiny-sd", seed=1, count=1)
    response = editor_client.get(reverse("gallery:run_card", args=[run.pk]), headers={"HX-Request": "true"})
    assert b'hx-trigger="every 1s"' in response.content
    assert b"waiting for the worker" in response.content
    assert b"<html" not in response.content  # just the partial
    run.claim(max_attempts=3)
    response = editor_client.get(reverse("gallery:run_card", args=[run.pk]), headers={"HX-Request": "true"})
    assert b"loading tiny-sd" in response.content
    run.succeed(load_seconds=0, gpu_seconds=0)
    response = editor_client.get(reverse("gallery:run_card", args=[run.pk]), headers={"HX-Request": "true"})
    assert b"hx-trigger" not in response.content
    assert b"Succeeded" in response.content


def test_cancel_button_cancels_a_queued_run(editor_client, article) -> None:
    run = run_submit(article=article, model="tiny-sd", seed=1, count=1)
    response = editor_client.post(reverse("gallery:run_cancel", args=[run.pk]))
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.CANCELLED


def test_candidate_image_is_served_to_a_logged_in_user(editor_client, article) -> None:
    run = run_submit(article=article, model="tiny-sd", seed=1, count=1)
    name = candidate_storage().save("runs/test/00.png", ContentFile(b"\x89PNG fake"))
    candidate = Candidate.objects.create(run=run, index=0, seed=1, image=name, width=8, height=8, sha256="0" * 64)
    response = editor_client.get(reverse("gallery:candidate_image", args=[candidate.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == b"\x89PNG fake"
    assert "private" in response["Cache-Control"]


def test_deleting_an_article_deletes_its_candidate_files_after_commit(
    article, django_capture_on_commit_callbacks
) -> None:
    run = run_submit(article=article, model="tiny-sd", seed=1, count=1)
    storage = candidate_storage()
    name = storage.save("runs/delete-me/00.png", ContentFile(b"png"))
    Candidate.objects.create(run=run, index=0, seed=1, image=name, width=8, height=8, sha256="0" * 64)
    with django_capture_on_commit_callbacks(execute=True):
        article.delete()
    assert not storage.exists(name)
    assert Candidate.objects.count() == 0


def test_generate_without_a_model_uses_the_presets_model(
    editor_client, article, django_capture_on_commit_callbacks
) -> None:
    from generation.models import StylePreset

    # The preset's own 1216x640 is beyond tiny-flux's sizes: this preset now uses the model's.
    StylePreset.objects.filter(slug="technical-deep-dive").update(model_profile="tiny-flux", width=None, height=None)
    with django_capture_on_commit_callbacks(execute=True):
        response = editor_client.post(reverse("gallery:run_create", args=[article.slug]), {"model": "", "count": "1"})
    assert response.status_code == 302
    run = GenerationRun.objects.get()
    assert run.model_profile == "tiny-flux" and run.preset is not None and run.preset.slug == "technical-deep-dive"
    assert (run.width, run.height, run.steps) == (512, 512, 4)
