"""The Magic Wand's note on a skipped LLM prompt writer is shown to every onlooker and in the
API: it says why, never where the LLM server is or its credentials (those go to the server log,
without the password). The small HTTP server below stands in for an Ollama server on another
machine."""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gallery.wand import article_wand

pytestmark = pytest.mark.django_db
SECRET = "s3cret-Pass-99"


class BrokenOllama(BaseHTTPRequestHandler):
    """Answers every POST with HTTP 500, like an Ollama whose model is missing; keeps the
    Authorization header it was sent."""

    authorization: list[str | None] = []

    def do_POST(self) -> None:
        BrokenOllama.authorization.append(self.headers.get("Authorization"))
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b'{"error": "model not found"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def broken_ollama() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BrokenOllama)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def assert_note_names_no_server(note: str, where: str) -> None:
    assert "template was used" in note, note
    for leak in (SECRET, "hoffdesk-llm", where, "http://", "https://"):
        assert leak not in note, (leak, note)


def test_an_unreachable_llm_server_is_not_named_in_the_note(settings: Any, article: Any, caplog: Any) -> None:
    settings.HOFFDESK_OLLAMA_URL = f"http://hoffdesk-llm:{SECRET}@127.0.0.1:9"  # discard port: refused
    caplog.set_level(logging.WARNING)
    run = article_wand(article=article)
    assert run.prompt_source == "template" and "could not reach the LLM server" in run.prompt_note
    assert_note_names_no_server(run.prompt_note, "127.0.0.1:9")
    assert "127.0.0.1:9" in caplog.text and SECRET not in caplog.text  # the operator can still find it


def test_an_llm_server_error_is_not_named_in_the_note(
    settings: Any, article: Any, broken_ollama: str, caplog: Any
) -> None:
    settings.HOFFDESK_OLLAMA_URL = f"http://hoffdesk-llm:{SECRET}@{broken_ollama}"
    settings.HOFFDESK_OLLAMA_TIMEOUT = 2.0
    BrokenOllama.authorization = []
    run = article_wand(article=article)
    assert run.prompt_source == "template"
    assert_note_names_no_server(run.prompt_note, broken_ollama)
    assert SECRET not in caplog.text
    # The URL's credentials reach the server as HTTP Basic (urllib cannot send them from the URL).
    assert BrokenOllama.authorization == ["Basic " + base64.b64encode(f"hoffdesk-llm:{SECRET}".encode()).decode()]


def test_the_note_is_not_in_the_api_either(settings: Any, article: Any, broken_ollama: str) -> None:
    from django.test import Client

    from api.models import ApiToken
    from tests.api.conftest import api_user

    settings.HOFFDESK_OLLAMA_URL = f"http://{broken_ollama}"
    run = article_wand(article=article)
    _row, token = ApiToken.issue(user=api_user("pipeline", "editors"))
    body = Client().get(f"/api/v1/runs/{run.pk}", headers={"Authorization": f"Bearer {token}"}).content.decode()
    assert "template was used" in body and broken_ollama not in body
