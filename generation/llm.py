"""The optional local LLM prompt writer: an Ollama-style server writes the image prompt.

With ``HOFFDESK_OLLAMA_URL`` set, the Magic Wand sends ``POST <url>/api/generate`` with
``{"model", "prompt", "stream": false}`` and reads ``{"response": "..."}``. Any failure (no
answer within ``HOFFDESK_OLLAMA_TIMEOUT`` seconds, an error status, malformed JSON, an empty
answer) returns the reason instead, and the caller falls back to the prompt template.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from django.conf import settings

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


def llm_write_prompt(*, title: str, summary: str, style: str) -> WrittenPrompt:
    """Ask the configured server for an image prompt; never raises."""
    url = f"{settings.HOFFDESK_OLLAMA_URL}/api/generate"
    body = json.dumps(
        {
            "model": settings.HOFFDESK_OLLAMA_MODEL,
            "prompt": INSTRUCTION.format(title=title, summary=summary or "(none)", style=style or "(house style)"),
            "stream": False,
        }
    ).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    timeout = settings.HOFFDESK_OLLAMA_TIMEOUT
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read(1_000_000)
    except urllib.error.HTTPError as exc:
        return WrittenPrompt(None, f"the LLM server at {url} answered HTTP {exc.code}")
    except TimeoutError:
        return WrittenPrompt(None, f"the LLM server at {url} did not answer within {timeout:g} s")
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            return WrittenPrompt(None, f"the LLM server at {url} did not answer within {timeout:g} s")
        return WrittenPrompt(None, f"could not reach the LLM server at {url}: {exc.reason}")
    except OSError as exc:
        return WrittenPrompt(None, f"could not reach the LLM server at {url}: {exc}")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return WrittenPrompt(None, f"the LLM server at {url} answered something that is not JSON")
    answer = data.get("response") if isinstance(data, dict) else None
    if not isinstance(answer, str):
        return WrittenPrompt(None, f"the LLM server's answer has no text in its 'response' field ({url})")
    text = " ".join(answer.strip().strip('"').split())
    if not text:
        return WrittenPrompt(None, "the LLM server answered with an empty prompt")
    return WrittenPrompt(text[:MAX_ANSWER_CHARACTERS])
