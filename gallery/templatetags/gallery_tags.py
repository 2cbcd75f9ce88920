"""Thumbnail URLs for templates: the grid never links a full PNG."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from generation.thumbnails import THUMBNAIL_WIDTHS

register = template.Library()


@register.simple_tag
def thumb_url(candidate: Any, width: int = THUMBNAIL_WIDTHS[0]) -> str:
    return reverse("gallery:candidate_thumbnail", args=[candidate.pk, candidate.sha256[:16], width])


@register.simple_tag
def thumb_srcset(candidate: Any) -> str:
    """``srcset`` with every thumbnail width no wider than the image itself (never upscaled)."""
    widths = [w for w in THUMBNAIL_WIDTHS if w <= candidate.width] or [THUMBNAIL_WIDTHS[0]]
    return ", ".join(f"{thumb_url(candidate, w)} {min(w, candidate.width)}w" for w in widths)


@register.filter
def thumb_height(candidate: Any, width: int) -> int:
    """The displayed height for ``width`` keeping the candidate's aspect."""
    return round(candidate.height * int(width) / candidate.width) if candidate.width else int(width)
