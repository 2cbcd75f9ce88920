"""The run card's live previews: an image per candidate while the run runs, served fresh
(``no-store``) to logged-in users only, and gone from the card and the URL once it ends."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from generation.models import GenerationRun
from generation.previews import previews_write
from generation.services import run_submit

pytestmark = pytest.mark.django_db


def jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def running_run(article) -> GenerationRun:
    run = run_submit(article=article, model="tiny-sd", seed=5, count=2, width=64, height=64, steps=8)
    assert run.claim(3, engine_profile="tiny-sd")
    previews_write(run_id=run.pk, images=[jpeg((200, 0, 0)), jpeg((0, 0, 200))], step=4)
    return run


def test_it_shows_a_preview_per_candidate_on_a_running_runs_card(editor_client, running_run) -> None:
    html = editor_client.get(f"/runs/{running_run.pk}/").content.decode()
    assert html.count('data-testid="run-preview"') == 2
    assert f"/runs/{running_run.pk}/previews/0.jpg?step=4" in html
    assert f"/runs/{running_run.pk}/previews/1.jpg?step=4" in html


def test_it_serves_the_preview_jpeg_uncached(editor_client, running_run) -> None:
    response = editor_client.get(f"/runs/{running_run.pk}/previews/1.jpg")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert response["Cache-Control"] == "no-store"
    with Image.open(io.BytesIO(response.content)) as image:
        pixel = image.getpixel((8, 8))
        assert isinstance(pixel, tuple) and pixel[2] > 150  # the blue one


def test_it_answers_401_to_a_visitor_who_is_not_logged_in(client, running_run) -> None:
    assert client.get(f"/runs/{running_run.pk}/previews/0.jpg").status_code == 401


def test_a_finished_run_has_no_previews_on_its_card_or_at_its_url(editor_client, running_run) -> None:
    assert running_run.fail("broken")
    assert 'data-testid="run-preview"' not in editor_client.get(f"/runs/{running_run.pk}/").content.decode()
    response = editor_client.get(f"/runs/{running_run.pk}/previews/0.jpg")
    assert response.status_code == 404 and b"not running" in response.content
