"""Alt text from a local vision model (Ollama) on the publish page, with the template suggestion as
the fallback whose reason the page shows. Ollama is a server on another machine, so these tests
talk to a small local HTTP server that speaks its ``POST /api/generate`` request and response shape
(as the prompt writer's tests do); our own code runs unmocked."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from html import unescape
from http.server import BaseHTTPRequestHandler

import pytest
from django.urls import reverse
from PIL import Image

from gallery.alt_text import MAX_SUGGESTION, alt_text_clean
from gallery.models import Publication
from gallery.publishing import alt_text_suggestion
from tests.gallery.test_publishing import approved_candidate
from tests.local_server import serving

pytestmark = pytest.mark.django_db

SENTENCE = "A lighthouse built from stacked SQLite pages glows over a dark sea."


class FakeVisionOllama(BaseHTTPRequestHandler):
    """Answers POST /api/generate like Ollama with stream false; ``mode`` picks a fault."""

    mode = "ok"
    requests: list[dict] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeVisionOllama.requests.append({"path": self.path, **body})
        if self.mode == "slow":
            time.sleep(2)
        if self.mode in ("error", "missing"):
            status, error = (
                (500, "CUDA out of memory")
                if self.mode == "error"
                else (404, f'model "{body["model"]}" not found, try pulling it first')
            )
            self._send(status, json.dumps({"error": error}).encode())
            return
        answer = {
            "ok": SENTENCE,
            "prefixed": ' "Image of a lighthouse built from stacked SQLite pages." ',
            "long": "A lighthouse " + "made of very many stacked pages " * 8 + "at night.",
            "empty": "   ",
        }.get(self.mode, SENTENCE)
        payload = (
            b"<html>busy"
            if self.mode == "malformed"
            else json.dumps({"model": body["model"], "response": answer, "done": True}).encode()
        )
        self._send(200, payload)

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        try:
            self.wfile.write(payload)
        except BrokenPipeError:
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def vision(settings) -> Iterator[type[FakeVisionOllama]]:
    with serving(FakeVisionOllama) as url:
        settings.HOFFDESK_OLLAMA_URL = url
        settings.HOFFDESK_OLLAMA_VISION_MODEL = "llava:7b"
        settings.HOFFDESK_OLLAMA_VISION_TIMEOUT = 0.5
        FakeVisionOllama.mode, FakeVisionOllama.requests = "ok", []
        yield FakeVisionOllama


def _alt_field(page: str) -> str:
    return unescape(page.split('name="alt_text"', 1)[1].split(">", 1)[1].split("</textarea>", 1)[0]).strip()


def test_the_vision_models_sentence_lands_in_the_field_from_a_small_image(
    vision, editor_client, editor, article
) -> None:
    candidate = approved_candidate(article, editor)
    page = editor_client.get(reverse("gallery:candidate_publish", args=[candidate.pk])).content.decode()
    assert _alt_field(page) == SENTENCE
    assert 'data-testid="alt-text-source"' in page and "llava:7b" in page and "check it" in page
    [sent] = vision.requests
    assert sent["path"] == "/api/generate" and sent["model"] == "llava:7b" and sent["stream"] is False
    assert "125" in sent["prompt"] and article.title in sent["prompt"]
    [image_b64] = sent["images"]
    image = Image.open(io.BytesIO(base64.b64decode(image_b64)))
    assert image.format == "JPEG" and max(image.size) == 512 and image.size == (512, 269)


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("slow", "did not answer within 0.5 s"),
        ("error", "answered HTTP 500"),
        ("missing", "has no model llava:7b"),
        ("long", f"longer than {MAX_SUGGESTION} characters"),
        ("empty", "answered with no text"),
        ("malformed", "not JSON"),
    ],
)
def test_each_failure_falls_back_to_the_template_suggestion_and_says_why(
    vision, editor_client, editor, article, mode, reason
) -> None:
    vision.mode = mode
    candidate = approved_candidate(article, editor)
    started = time.monotonic()
    page = editor_client.get(reverse("gallery:candidate_publish", args=[candidate.pk])).content.decode()
    assert time.monotonic() - started < 5
    assert _alt_field(page) == alt_text_suggestion(candidate)
    note = unescape(page.split('data-testid="alt-text-note"', 1)[1].split("</p>", 1)[0])
    assert reason in note and "template" in note
    assert "127.0.0.1" not in note


def test_a_prefixed_answer_is_cleaned_not_rejected(vision, editor_client, editor, article) -> None:
    vision.mode = "prefixed"
    candidate = approved_candidate(article, editor)
    page = editor_client.get(reverse("gallery:candidate_publish", args=[candidate.pk])).content.decode()
    assert _alt_field(page) == "A lighthouse built from stacked SQLite pages."


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("An image of a red bicycle.", "A red bicycle."),
        ("Alt text: Picture of two cats asleep", "Two cats asleep."),
        ("A photo of a GPU. It has fans. The fans spin.", "A GPU."),
        ("The image shows a desk lamp at night", "A desk lamp at night."),
    ],
)
def test_the_cleaner_drops_image_of_and_keeps_one_sentence(answer, expected) -> None:
    assert alt_text_clean(answer) == (expected, "")


def test_the_editor_confirms_a_post_never_asks_the_model_and_keeps_their_words(
    vision, editor_client, editor, article
) -> None:
    candidate = approved_candidate(article, editor)
    url = reverse("gallery:candidate_publish", args=[candidate.pk])
    response = editor_client.post(url, {"alt_text": "My own words", "focal_x": "0.5", "focal_y": "0.5"})
    assert response.status_code == 302 and vision.requests == []
    assert Publication.objects.get().alt_text == "My own words"


def test_without_a_vision_model_the_template_is_used_and_nothing_is_asked(
    settings, editor_client, editor, article
) -> None:
    settings.HOFFDESK_OLLAMA_VISION_MODEL = ""
    candidate = approved_candidate(article, editor)
    page = editor_client.get(reverse("gallery:candidate_publish", args=[candidate.pk])).content.decode()
    assert _alt_field(page) == alt_text_suggestion(candidate)
    assert 'data-testid="alt-text-note"' not in page and 'data-testid="alt-text-source"' not in page
