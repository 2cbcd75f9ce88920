"""Alt text suggested by a local vision model (Ollama), for the publish page.

With ``HOFFDESK_OLLAMA_VISION_MODEL`` set (llava, moondream, qwen2.5-vl... on the Ollama server at
``HOFFDESK_OLLAMA_URL``), the publish page asks that model to look at the candidate and write one
sentence. Vision models pad their answers ("An image of...", quotes, a second sentence), so the
answer is cleaned, and one still over ``MAX_SUGGESTION`` characters is refused rather than cut
mid-word. Anything that goes wrong (no answer within ``HOFFDESK_OLLAMA_VISION_TIMEOUT`` seconds,
an error status, a model the server lacks, a bad answer) gives the template suggestion with the
reason, which the page shows. Either way it is a suggestion: the editor confirms or edits it.

The model sees a JPEG at most ``IMAGE_SIDE`` pixels on its longer side, not the candidate PNG:
vision encoders work at 336-768 px anyway, and a megabyte of base64 per request is wasted time.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from typing import Final

from django.conf import settings
from PIL import Image

from gallery.publishing import alt_text_suggestion
from generation.llm import ollama_generate
from generation.models import Candidate

MAX_SUGGESTION: Final = 125
IMAGE_SIDE: Final = 512
INSTRUCTION: Final = (
    "Write the alt text for this image{context}: one sentence under {limit} characters that says what "
    "is seen, for a reader who cannot see it. Do not begin with 'image of' or 'picture of'. "
    "No preamble, no quotes."
)

_LABEL = re.compile(r"^(alt[ -]?text|description|caption)\s*:\s*", re.IGNORECASE)
_IMAGE_OF = re.compile(
    r"^(?:(?:an?|the|this)\s+)?(?:image|picture|photo|photograph|illustration|drawing|render(?:ing)?)\s+"
    r"(?:of|shows|showing|depicts|depicting|features|featuring)\s+",
    re.IGNORECASE,
)
_QUOTES = "\"'\u201c\u201d\u2018\u2019`"


@dataclass(frozen=True)
class AltTextSuggestion:
    """What goes into the field: the vision model's sentence (``source`` "vision") or the template
    suggestion (``source`` "template", with ``reason`` when the vision model was asked but failed)."""

    text: str
    source: str
    model: str = ""
    reason: str = ""


def vision_configured() -> bool:
    return bool(settings.HOFFDESK_OLLAMA_VISION_MODEL)


def alt_text_clean(answer: str) -> tuple[str | None, str]:
    """(one clean sentence, "") or (None, why the answer cannot be used)."""
    text = " ".join(answer.split()).strip(_QUOTES + " ")
    text = _LABEL.sub("", text).strip(_QUOTES + " ")
    text = _IMAGE_OF.sub("", text)
    text = re.split(r"(?<=[.!?])\s+", text, maxsplit=1)[0].strip(_QUOTES + " ")
    if not text:
        return None, "the vision model answered with no text"
    text = text[0].upper() + text[1:]
    if text[-1] not in ".!?":
        text += "."
    if len(text) > MAX_SUGGESTION:
        return None, f"the vision model's sentence is {len(text)} characters, longer than {MAX_SUGGESTION} characters"
    return text, ""


def vision_image(candidate: Candidate) -> bytes:
    """The candidate as a JPEG at most ``IMAGE_SIDE`` px on its longer side (read via the storage)."""
    with candidate.image.open("rb") as fh, Image.open(fh) as source:
        image = source.convert("RGB")
    image.thumbnail((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def alt_text_suggest(*, candidate: Candidate) -> AltTextSuggestion:
    """The vision model's sentence when configured and usable, else the template's; never raises."""
    fallback = alt_text_suggestion(candidate)
    model = settings.HOFFDESK_OLLAMA_VISION_MODEL
    if not model:
        return AltTextSuggestion(fallback, "template")
    if not settings.HOFFDESK_OLLAMA_URL:
        return AltTextSuggestion(fallback, "template", model, "HOFFDESK_OLLAMA_URL is not set")
    try:
        image = vision_image(candidate)
    except (OSError, ValueError) as exc:
        return AltTextSuggestion(fallback, "template", model, f"the image could not be read ({type(exc).__name__})")
    article = candidate.run.article
    answer = ollama_generate(
        {
            "model": model,
            "prompt": INSTRUCTION.format(
                context=f", which illustrates the blog article “{article.title}”" if article else "",
                limit=MAX_SUGGESTION,
            ),
            "images": [base64.b64encode(image).decode("ascii")],
            "stream": False,
        },
        timeout=settings.HOFFDESK_OLLAMA_VISION_TIMEOUT,
        who="the Ollama server",
    )
    if answer.status == 404:
        return AltTextSuggestion(
            fallback, "template", model, f"the Ollama server has no model {model} (run `ollama pull {model}` there)"
        )
    if answer.text is None:
        return AltTextSuggestion(fallback, "template", model, answer.reason)
    text, problem = alt_text_clean(answer.text)
    if text is None:
        return AltTextSuggestion(fallback, "template", model, problem)
    return AltTextSuggestion(text, "vision", model)
