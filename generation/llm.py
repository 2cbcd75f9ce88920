"""The optional local LLM prompt writer: an Ollama-style server writes the image prompt.

With ``HOFFDESK_OLLAMA_URL`` set, the Magic Wand sends ``POST <url>/api/generate`` with
``{"model", "prompt", "stream": false}`` and reads ``{"response": "..."}``. Any failure (no
answer within ``HOFFDESK_OLLAMA_TIMEOUT`` seconds, an error status, malformed JSON, an empty
answer) returns the reason instead, and the caller falls back to the prompt template. The reason
ends up in the run's note, which onlookers and the API see: it never names the server's address
or credentials (``user:password@`` in the URL is sent as HTTP Basic); the server log does, without
the password.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from django.conf import settings

logger = logging.getLogger(__name__)

INSTRUCTION = (
    "Write one prompt for a text-to-image model that makes the hero image of a blog article. "
    "Describe only what is seen: subject, setting, composition, light. No text or lettering in the image. "
    "At most 60 words, one paragraph, no quotes, no preamble.\n\n"
    "Article title: {title}\nSummary: {summary}\nImage style: {style}\n\nPrompt:"
)
MAX_ANSWER_CHARACTERS = 1500


@dataclass(frozen=True)
class WrittenPrompt:
    """The LLM's prompt, or None with the reason it could not be used."""

    text: str | None
    reason: str = ""


def llm_configured() -> bool:
    return bool(settings.HOFFDESK_OLLAMA_URL)


def _endpoint() -> tuple[str, dict[str, str]]:
    """(url without credentials, headers): ``user:password@`` in HOFFDESK_OLLAMA_URL becomes HTTP
    Basic (urllib cannot send it from the URL), so the url is safe to log."""
    parts = urllib.parse.urlsplit(f"{settings.HOFFDESK_OLLAMA_URL}/api/generate")
    url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    headers = {"Content-Type": "application/json"}
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return url, headers


@dataclass(frozen=True)
class OllamaAnswer:
    """The ``response`` text of ``POST /api/generate``, or None with the reason (and the HTTP status
    when the server answered with an error)."""

    text: str | None
    reason: str = ""
    status: int | None = None


def ollama_generate(body: dict[str, object], *, timeout: float, who: str = "the LLM server") -> OllamaAnswer:
    """One non-streaming ``POST <HOFFDESK_OLLAMA_URL>/api/generate``; never raises. Shared by the
    prompt writer and the alt text suggester (gallery/alt_text.py): ``who`` names the server in
    the reason, which never holds its address (the server log does)."""
    url, headers = _endpoint()
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")

    def skipped(reason: str, detail: str = "", status: int | None = None) -> OllamaAnswer:
        logger.warning("Ollama at %s (%s): %s%s", url, body.get("model"), reason, f" ({detail})" if detail else "")
        return OllamaAnswer(None, reason, status)

    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read(1_000_000)
    except urllib.error.HTTPError as exc:
        return skipped(f"{who} answered HTTP {exc.code}", status=exc.code)
    except TimeoutError:
        return skipped(f"{who} did not answer within {timeout:g} s")
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            return skipped(f"{who} did not answer within {timeout:g} s")
        return skipped(f"could not reach {who} (the server log says why)", str(exc.reason))
    except (OSError, ValueError) as exc:
        return skipped(f"could not reach {who} (the server log says why)", str(exc))
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return skipped(f"{who} answered something that is not JSON")
    answer = data.get("response") if isinstance(data, dict) else None
    if not isinstance(answer, str):
        return skipped(f"{who}'s answer has no text in its 'response' field")
    return OllamaAnswer(answer)


def llm_write_prompt(*, title: str, summary: str, style: str) -> WrittenPrompt:
    """Ask the configured server for an image prompt; never raises."""
    answer = ollama_generate(
        {
            "model": settings.HOFFDESK_OLLAMA_MODEL,
            "prompt": INSTRUCTION.format(title=title, summary=summary or "(none)", style=style or "(house style)"),
            "stream": False,
        },
        timeout=settings.HOFFDESK_OLLAMA_TIMEOUT,
    )
    if answer.text is None:
        return WrittenPrompt(None, answer.reason)
    text = " ".join(answer.text.strip().strip('"').split())
    if not text:
        logger.warning("LLM prompt writer: the LLM server answered with an empty prompt")
        return WrittenPrompt(None, "the LLM server answered with an empty prompt")
    return WrittenPrompt(text[:MAX_ANSWER_CHARACTERS])
