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


def _skipped(reason: str, url: str, detail: str = "") -> WrittenPrompt:
    """The reason for the run's note (seen by onlookers and the API: no address, no credentials)
    and the address with the detail for the server's log."""
    logger.warning("LLM prompt writer at %s: %s%s", url, reason, f" ({detail})" if detail else "")
    return WrittenPrompt(None, reason)


def llm_write_prompt(*, title: str, summary: str, style: str) -> WrittenPrompt:
    """Ask the configured server for an image prompt; never raises."""
    url, headers = _endpoint()
    body = json.dumps(
        {
            "model": settings.HOFFDESK_OLLAMA_MODEL,
            "prompt": INSTRUCTION.format(title=title, summary=summary or "(none)", style=style or "(house style)"),
            "stream": False,
        }
    ).encode()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    timeout = settings.HOFFDESK_OLLAMA_TIMEOUT
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read(1_000_000)
    except urllib.error.HTTPError as exc:
        return _skipped(f"the LLM server answered HTTP {exc.code}", url)
    except TimeoutError:
        return _skipped(f"the LLM server did not answer within {timeout:g} s", url)
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            return _skipped(f"the LLM server did not answer within {timeout:g} s", url)
        return _skipped("could not reach the LLM server (the server log says why)", url, str(exc.reason))
    except (OSError, ValueError) as exc:
        return _skipped("could not reach the LLM server (the server log says why)", url, str(exc))
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _skipped("the LLM server answered something that is not JSON", url)
    answer = data.get("response") if isinstance(data, dict) else None
    if not isinstance(answer, str):
        return _skipped("the LLM server's answer has no text in its 'response' field", url)
    text = " ".join(answer.strip().strip('"').split())
    if not text:
        return _skipped("the LLM server answered with an empty prompt", url)
    return WrittenPrompt(text[:MAX_ANSWER_CHARACTERS])
