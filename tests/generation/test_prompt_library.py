"""Prompt templates (one renderer, checked placeholders, versions, preview) and the optional
local LLM prompt writer, tested against a small HTTP server speaking Ollama's /api/generate."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from gallery.models import Article
from gallery.wand import article_wand
from generation.models import GenerationRun, PromptTemplate
from generation.prompts import prompt_render, template_problems
from generation.services import run_submit
from tests.conftest import make_user
from tests.local_server import serving

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("A {mood} picture of {title}", "Unknown placeholder {mood}"),
        ("{title", "braces do not match"),
        ("title}", "braces do not match"),
        ("{0} and {title}", "Unknown placeholder {0}"),
        ("{}", "Empty placeholder"),
        ("{title:>40}", "may not carry a format"),
        ("{title!r}", "may not carry a format"),
        ("{title.upper}", "Unknown placeholder {title.upper}"),
    ],
)
def test_malformed_or_unknown_placeholders_are_named(text, problem) -> None:
    assert any(problem in p for p in template_problems(text)), template_problems(text)


def test_every_documented_placeholder_renders_and_literal_braces_survive(article) -> None:
    text = "{title}|{summary}|{tone}|{content_type}|{series}|{style}|{palette}|{art_direction} {{braces}}"
    assert template_problems(text) == []
    values = {"title": "T", "summary": "S", "tone": "calm", "content_type": "Tutorial", "series": "X"}
    assert prompt_render(text, values) == "T|S|calm|Tutorial|X||| {braces}"


@pytest.fixture
def admin_client(client):  # type: ignore[no-untyped-def]
    user = make_user("librarian", "admins")
    user.is_staff = True
    user.save()
    client.force_login(user)
    return client


def test_a_template_with_an_unknown_placeholder_cannot_be_saved(admin_client) -> None:
    before = PromptTemplate.objects.count()
    response = admin_client.post(
        "/admin/generation/prompttemplate/add/", {"name": "moody", "text": "A {mood} photo of {title}"}
    )
    assert response.status_code == 200
    assert "Unknown placeholder {mood}" in response.content.decode()
    assert PromptTemplate.objects.count() == before


def test_editing_a_template_makes_a_new_version_and_leaves_old_runs_unchanged(admin_client, article) -> None:
    old = PromptTemplate.objects.filter(name="hero").latest("version")
    run = run_submit(article=article, model="tiny-sd")
    assert run.prompt_template == old
    old_prompt, old_text = run.prompt, old.text

    response = admin_client.post(
        f"/admin/generation/prompttemplate/{old.pk}/change/", {"name": "hero", "text": "Cover art: {title}. {style}"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    old.refresh_from_db()
    run.refresh_from_db()
    assert old.text == old_text and run.prompt == old_prompt and run.prompt_template == old
    newest = PromptTemplate.objects.filter(name="hero").latest("version")
    assert newest.version == old.version + 1 and newest.text == "Cover art: {title}. {style}"
    assert run_submit(article=article, model="tiny-sd").prompt.startswith(f"Cover art: {article.title}.")


def test_the_preview_renders_a_template_against_a_chosen_article_and_flags_a_long_prompt(admin_client) -> None:
    Article.objects.create(slug="short", title="Short title", content_type="quick_tip")
    Article.objects.create(slug="long", title="Long", summary="word " * 120, content_type="quick_tip")
    template = PromptTemplate.objects.filter(name="hero").latest("version")
    page = admin_client.get(f"/admin/generation/prompttemplate/{template.pk}/preview/?article=short").content.decode()
    assert "Hero image for a blog article titled &quot;Short title&quot;" in page
    assert 'id="prompt-ok"' in page
    page = admin_client.get(f"/admin/generation/prompttemplate/{template.pk}/preview/?article=long").content.decode()
    assert 'id="prompt-warning"' in page and "reads 77" in page


def test_editors_outside_admins_cannot_open_the_prompt_library(client) -> None:
    user = make_user("plain-editor", "editors")
    user.is_staff = True
    user.save()
    client.force_login(user)
    assert client.get("/admin/generation/prompttemplate/").status_code == 403


class FakeOllama(BaseHTTPRequestHandler):
    """Answers POST /api/generate the way Ollama does with stream false; ``mode`` picks a fault."""

    mode = "ok"
    requests: list[dict] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOllama.requests.append({"path": self.path, **body})
        if self.mode == "slow":
            time.sleep(2)
        if self.mode == "error":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b'{"error": "model not found"}')
            return
        payload = (
            b"<html>not json"
            if self.mode == "malformed"
            else json.dumps(
                {"model": body["model"], "response": "A glowing GPU on a dark desk, rose rim light", "done": True}
            ).encode()
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        try:
            self.wfile.write(payload)
        except BrokenPipeError:
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def ollama(settings) -> Iterator[type[FakeOllama]]:
    with serving(FakeOllama) as url:
        settings.HOFFDESK_OLLAMA_URL = url
        settings.HOFFDESK_OLLAMA_MODEL = "llama3.2:3b"
        settings.HOFFDESK_OLLAMA_TIMEOUT = 0.5
        FakeOllama.mode, FakeOllama.requests = "ok", []
        yield FakeOllama


def test_the_llm_writes_the_prompt_when_its_server_answers(ollama, article) -> None:
    run = article_wand(article=article)
    assert run.prompt_source == "llm" and run.prompt_note == ""
    assert run.prompt.startswith("A glowing GPU on a dark desk, rose rim light.")
    assert "photorealistic hardware" in run.prompt  # the preset's style is still added
    [sent] = ollama.requests
    assert sent["path"] == "/api/generate" and sent["stream"] is False and sent["model"] == "llama3.2:3b"
    assert article.title in sent["prompt"] and article.summary in sent["prompt"]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("slow", "did not answer within 0.5 s"),
        ("error", "answered HTTP 500"),
        ("malformed", "not JSON"),
    ],
)
def test_the_llm_is_skipped_with_a_recorded_reason_and_the_template_used(ollama, article, mode, reason) -> None:
    ollama.mode = mode
    started = time.monotonic()
    run = article_wand(article=article)
    assert time.monotonic() - started < 5
    assert run.prompt_source == "template" and run.prompt_template is not None
    assert reason in run.prompt_note and "template was used" in run.prompt_note
    assert article.title in run.prompt
    assert GenerationRun.objects.count() == 1


def test_an_unreachable_llm_server_is_a_recorded_reason_too(settings, article) -> None:
    settings.HOFFDESK_OLLAMA_URL = "http://127.0.0.1:9"  # discard port: connection refused
    run = article_wand(article=article)
    assert run.prompt_source == "template" and "could not reach the LLM server" in run.prompt_note


def test_a_typed_prompt_never_asks_the_llm(ollama, article) -> None:
    run = article_wand(article=article, prompt="a red bicycle")
    assert run.prompt == "a red bicycle" and run.prompt_source == "typed" and ollama.requests == []
