"""The dashboard says when the ComfyUI server it is set up for does not answer (checked at most every
30 s, so a page view is not slowed by the network), and a run card names the ComfyUI workflow a run
used.

The servers here stand in for a ComfyUI box on another machine: the stand-in of
tests/comfyui_server.py, and a tiny counting HTTP server that answers every request with 503 (a
ComfyUI behind a proxy whose backend is down), to measure how many requests a page view makes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse

from generation import context_processors
from generation.models import ComfyWorkflow, GenerationRun
from generation.services import run_submit
from generation.workflows import propose_mapping
from tests.comfyui_server import ComfyUITarget, sd15_workflow

pytestmark = pytest.mark.django_db

BANNER = 'data-testid="comfyui-down"'


@pytest.fixture(autouse=True)
def forget_health_checks() -> Iterator[None]:
    context_processors.forget_comfyui_health()
    yield
    context_processors.forget_comfyui_health()


class _Counting(BaseHTTPRequestHandler):
    hits = 0

    def _answer(self) -> None:
        type(self).hits += 1
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def failing_server() -> Iterator[tuple[str, type[_Counting]]]:
    handler = type("Counting", (_Counting,), {"hits": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_the_banner_says_a_configured_comfyui_server_does_not_answer(editor_client, settings, failing_server) -> None:
    settings.HOFFDESK_COMFYUI_URL = failing_server[0]

    page = editor_client.get(reverse("gallery:article_list")).content.decode()

    assert BANNER in page
    assert "HOFFDESK_COMFYUI_URL" in page


def test_no_banner_without_a_comfyui_server_or_when_it_answers(
    editor_client, settings, fresh_comfyui: ComfyUITarget
) -> None:
    settings.HOFFDESK_COMFYUI_URL = ""
    assert BANNER not in editor_client.get(reverse("gallery:article_list")).content.decode()

    settings.HOFFDESK_COMFYUI_URL = fresh_comfyui.url
    assert BANNER not in editor_client.get(reverse("gallery:article_list")).content.decode()


def test_the_article_list_asks_the_server_once_per_30_seconds_not_per_request(
    editor_client, settings, failing_server, monkeypatch
) -> None:
    url, handler = failing_server
    settings.HOFFDESK_COMFYUI_URL = url
    assert BANNER in editor_client.get(reverse("gallery:article_list")).content.decode()
    asked = handler.hits
    assert asked >= 1

    for _ in range(5):
        assert BANNER in editor_client.get(reverse("gallery:article_list")).content.decode()
    assert handler.hits == asked

    monkeypatch.setattr(context_processors, "COMFYUI_HEALTH_CACHE_SECONDS", 0.0)  # as if 30 s had passed
    editor_client.get(reverse("gallery:article_list"))
    assert handler.hits > asked


def test_a_run_card_names_the_comfyui_workflow_and_version(editor_client, article) -> None:
    graph = sd15_workflow("stand-in-sd15.safetensors")
    workflow = ComfyWorkflow.objects.create(name="house-sd15", version=3, graph=graph, mapping=propose_mapping(graph))
    run = run_submit(article=article, model="tiny-sd", seed=5, count=1, width=64, height=64)
    GenerationRun.objects.filter(pk=run.pk).update(comfy_workflow=workflow)

    page = editor_client.get(reverse("gallery:article_detail", args=[article.slug])).content.decode()

    assert "ComfyUI workflow house-sd15 v3" in page


def test_a_diffusers_run_card_names_no_comfyui_workflow(editor_client, article) -> None:
    run_submit(article=article, model="tiny-sd", seed=5, count=1, width=64, height=64)

    page = editor_client.get(reverse("gallery:article_detail", args=[article.slug])).content.decode()

    assert "ComfyUI workflow" not in page
