"""The one prompt renderer: placeholders, checks, and a length check against the text encoder.

Templates use ``{name}`` placeholders from the article and the preset (``PLACEHOLDERS``); a
literal brace is written ``{{`` or ``}}``. Anything else (an unknown name, ``{0}``, a format spec,
an attribute, an unclosed brace) is refused when the template is saved, so rendering never fails.
"""

from __future__ import annotations

import re
import string
from typing import Any

from generation.profiles import ModelProfile

ARTICLE_PLACEHOLDERS = ("title", "summary", "tone", "content_type", "series")
PRESET_PLACEHOLDERS = ("style", "palette", "art_direction")
PLACEHOLDERS = ARTICLE_PLACEHOLDERS + PRESET_PLACEHOLDERS

_formatter = string.Formatter()


def template_problems(text: str) -> list[str]:
    """What is wrong with a template's placeholders, in words; empty when it can be saved."""
    problems: list[str] = []
    try:
        parts = list(_formatter.parse(text))
    except ValueError as exc:
        return [f"The braces do not match ({exc}); write a literal brace as {{{{ or }}}}."]
    allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
    for _literal, field, spec, conversion in parts:
        if field is None:
            continue
        shown = "{" + field + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
        if field not in PLACEHOLDERS:
            if field == "":
                problems.append(f"Empty placeholder {shown}: name one of {allowed}.")
            else:
                problems.append(f"Unknown placeholder {shown}: use one of {allowed}.")
        elif spec or conversion:
            problems.append(f"Placeholder {shown} may not carry a format or conversion; write {{{field}}}.")
    return problems


def prompt_render(text: str, values: dict[str, str]) -> str:
    """Fill a checked template; placeholders without a value become empty. Whitespace is
    collapsed, so an empty summary leaves no double space."""
    out: list[str] = []
    for literal, field, _spec, _conversion in _formatter.parse(text):
        out.append(literal)
        if field is not None:
            out.append(str(values.get(field, "") or ""))
    return " ".join("".join(out).split())


def prompt_values(*, article: Any, preset: Any) -> dict[str, str]:
    """The placeholder values for ``article`` styled by ``preset`` (either may be None)."""
    values = {name: "" for name in PLACEHOLDERS}
    if article is not None:
        values.update(
            title=article.title,
            summary=article.summary,
            tone=article.tone,
            content_type=article.get_content_type_display(),
            series=article.series,
        )
    if preset is not None:
        values.update(style=preset.prompt_suffix, palette=preset.palette, art_direction=preset.art_direction)
    return values


# CLIP's tokenizer splits text like this before byte-pair encoding: every match is at least one
# token, and long or rare words are several. Without the vocabulary (the web process loads no
# model files) the count is an estimate: a word of more than 6 letters is counted as two tokens.
_CLIP_PIECES = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+", re.IGNORECASE)

# What each family's text encoder reads; the rest of a longer prompt is cut off by the pipeline.
ENCODER_LIMITS = {
    "sd": ("CLIP", 77),
    "sdxl": ("CLIP", 77),
    "sd3": ("CLIP", 77),
    "flux": ("T5", 512),
}


def prompt_token_estimate(prompt: str) -> int:
    """Tokens a CLIP or T5 tokenizer makes of ``prompt``, estimated, plus start and end tokens."""
    count = 0
    for piece in _CLIP_PIECES.findall(prompt):
        count += 2 if len(piece) > 6 else 1
    return count + 2


def prompt_length_warning(prompt: str, profile: ModelProfile) -> str:
    """A warning when ``prompt`` is longer than the profile's text encoder reads, else ''."""
    encoder, limit = ENCODER_LIMITS.get(profile.family, ("CLIP", 77))
    if profile.family == "flux":
        limit = int(str(profile.pipeline_kwargs.get("max_sequence_length", limit)))
    tokens = prompt_token_estimate(prompt)
    if tokens <= limit:
        return ""
    return (
        f"This prompt is about {tokens} tokens; {profile.name}'s {encoder} text encoder reads {limit}, "
        "so the end of it will be ignored. Shorten it, or put what matters first."
    )
