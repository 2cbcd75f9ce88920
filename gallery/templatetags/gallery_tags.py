"""Candidate links for templates, built without a ``reverse()`` per link.

A 50-candidate page needs about ten links per candidate; reversing each one cost more than the
database. The URL patterns are reversed once per process with a placeholder and then filled in.
The grid only ever links WebP thumbnails, never a full PNG.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from django import template
from django.urls import reverse

from generation.thumbnails import THUMBNAIL_WIDTHS

register = template.Library()

_PK = 987654321
_VERSION = "0123456789abcdef"
_WIDTH = 123456


@cache
def _pattern(name: str) -> str:
    """``name``'s URL with ``{pk}`` (and ``{version}``, ``{width}``) placeholders."""
    if name == "candidate_thumbnail":
        url = reverse(f"gallery:{name}", args=[_PK, _VERSION, _WIDTH])
        return url.replace(str(_PK), "{pk}", 1).replace(_VERSION, "{version}", 1).replace(str(_WIDTH), "{width}", 1)
    return reverse(f"gallery:{name}", args=[_PK]).replace(str(_PK), "{pk}", 1)


@dataclass(frozen=True)
class CandidateLinks:
    pk: int
    version: str
    image_width: int
    image_height: int
    index: int
    run_id: int
    seed: int
    variation_seed: int | None

    @property
    def label(self) -> str:
        """Alt text and accessible name of a tile."""
        return f"Candidate {self.index} of run {self.run_id}, seed {self.seed}"

    @property
    def seeds(self) -> str:
        """The seed, with the variation seed after a tilde for a variations run."""
        return f"{self.seed} ~ {self.variation_seed}" if self.variation_seed is not None else str(self.seed)

    @property
    def height_240(self) -> int:
        return round(self.image_height * 240 / self.image_width) if self.image_width else 240

    def _url(self, name: str) -> str:
        return _pattern(name).format(pk=self.pk)

    @property
    def detail(self) -> str:
        return self._url("candidate_detail")

    @property
    def review(self) -> str:
        return self._url("candidate_review")

    @property
    def hero(self) -> str:
        return self._url("candidate_hero")

    @property
    def publish(self) -> str:
        return self._url("candidate_publish")

    @property
    def regenerate(self) -> str:
        return self._url("candidate_regenerate")

    @property
    def image(self) -> str:
        return self._url("candidate_image")

    def thumb(self, width: int) -> str:
        return _pattern("candidate_thumbnail").format(pk=self.pk, version=self.version, width=width)

    @property
    def thumb_1x(self) -> str:
        return self.thumb(THUMBNAIL_WIDTHS[0])

    @property
    def thumb_2x(self) -> str:
        return self.thumb(THUMBNAIL_WIDTHS[1])

    @property
    def srcset(self) -> str:
        """Every thumbnail width no wider than the image itself (never upscaled)."""
        widths = [w for w in THUMBNAIL_WIDTHS if w <= self.image_width] or [THUMBNAIL_WIDTHS[0]]
        return ", ".join(f"{self.thumb(w)} {min(w, self.image_width)}w" for w in widths)


@register.filter
def links(candidate: Any) -> CandidateLinks:
    c = candidate
    return CandidateLinks(c.pk, c.sha256[:16], c.width, c.height, c.index, c.run_id, c.seed, c.variation_seed)


@register.simple_tag
def thumb_url(candidate: Any, width: int = THUMBNAIL_WIDTHS[0]) -> str:
    return links(candidate).thumb(width)


@register.filter
def thumb_height(candidate: Any, width: int) -> int:
    """The displayed height for ``width`` keeping the candidate's aspect."""
    return round(candidate.height * int(width) / candidate.width) if candidate.width else int(width)


@register.simple_tag(takes_context=True)
def candidate_tile(context: Any, candidate: Any, article: Any, message: str = "") -> str:
    """The grid tile (``gallery.tiles``); ``can_act`` and the CSRF token come from the context.
    No ``article`` (None, or missing from the context): an Inbox candidate."""
    from gallery.tiles import candidate_tile as tile

    can_act = context.get("can_act")
    return tile(
        candidate,
        hero_id=getattr(article, "hero_candidate_id", None),
        can_act=bool(can_act() if callable(can_act) else can_act),
        csrf=str(context.get("csrf_token", "")),
        message=message or "",
        in_inbox=not article,
    )


@register.filter(name="picture_snippet")
def picture_snippet_filter(publication: Any) -> str:
    """The ``<picture>`` HTML for a publication's card (each card its own, live one included)."""
    from gallery.publishing import picture_snippet

    return picture_snippet(publication)
