"""The review grid's candidate tile, as one function.

Measured on the 2-core dev VM (bench/dashboard.py): drawn by the template engine, 50 tiles
took ~35 ms of a 60 ms article page (about 30 variable lookups and ten ``{% if %}`` each), and
~12 ms through ``format_html`` (its lazy-aware escaping dominates). Plain f-strings with the
standard library's ``html.escape`` on every value take ~2 ms. The page and the htmx swap both
render the ``candidate-tile`` partial, which calls ``candidate_tile``, so the two cannot drift.
"""

from __future__ import annotations

from html import escape
from typing import Any

from django.utils.safestring import SafeString, mark_safe

from gallery.cloud_tiles import cloud_label
from gallery.final_render import draft_label, final_render_button
from gallery.templatetags.gallery_tags import links

_STATE_LABELS = {"pending": "Pending", "approved": "Approved", "rejected": "Rejected", "published": "Published"}


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def stars_html(rating: int) -> str:
    """The rating as five stars, filled up to ``rating`` (0-5); read by keys and tests as ``data-rating``."""
    label = f"{rating} of 5 stars" if rating else "not rated"
    return (
        f'<span class="stars" data-testid="rating" data-rating="{rating}" title="{label}" aria-label="{label}">'
        f"{'★' * rating}{'☆' * (5 - rating)}</span> "
    )


def _actions(
    url: Any, pk: int, status: str, seed: int, csrf: str, is_hero: bool, in_inbox: bool, in_cloud: bool = False
) -> str:
    token = f'<input type="hidden" name="csrfmiddlewaretoken" value="{_e(csrf)}">'
    buttons = ""
    if status in ("pending", "rejected"):
        buttons += '<button name="action" value="approve" data-key="a" class="approve">Approve</button>'
    if status in ("pending", "approved"):
        buttons += (
            '<button name="action" value="reject" data-key="r" class="reject">Reject</button>'
            '<input type="text" name="reason" placeholder="reason to reject (optional)" '
            f'aria-label="Reason for rejecting seed {_e(seed)}" maxlength="1000">'
        )
    if status in ("approved", "rejected"):
        buttons += '<button name="action" value="undo" data-key="u">Undo</button>'
    hero = ""
    if in_inbox:  # no article yet: no hero, no publishing; filing is the way to both
        hero += f'<a class="button-link file" href="{_e(url.detail)}#file" data-testid="file-link">File to article…</a>'
    elif status == "approved":
        hero += f'<a class="button-link" href="{_e(url.publish)}">Publish…</a>'
    if status == "approved" and not is_hero and not in_inbox:
        hero_url = _e(url.hero)
        hero += f'<form method="post" action="{hero_url}" hx-post="{hero_url}">{token}<button>Make hero</button></form>'
    review = _e(url.review)
    # A cloud image has no seed to re-run: no Regenerate (Make in the cloud is on the article page).
    regenerate = f'<a class="button-link" href="{_e(url.regenerate)}">Regenerate…</a>'
    return (
        f'<form class="actions" method="post" action="{review}" hx-post="{review}" hx-target="#candidate-{pk}" '
        f'hx-swap="outerHTML">{token}<input type="hidden" name="expected" value="{_e(status)}">{buttons}</form>'
        f'<div class="actions">{hero}{"" if in_cloud else regenerate}'
        f'<label class="compare"><input type="checkbox" name="c" value="{pk}" form="compare-form">'
        " Compare</label></div>"
    )


def candidate_tile(
    candidate: Any, *, hero_id: int | None, can_act: bool, csrf: str, message: str = "", in_inbox: bool = False
) -> SafeString:
    """One candidate of the grid: thumbnail, seed, state, who decided, and (for editors) the
    review form that ``gallery.views.candidate_decide`` answers with this same tile. An Inbox
    candidate (its run has no article) offers filing instead of hero and publish."""
    url = links(candidate)
    pk = int(candidate.pk)
    status = str(candidate.review_status)
    is_hero = hero_id == pk
    label = _e(url.label)
    detail = _e(url.detail)
    who = ""
    if candidate.reviewed_by_id and candidate.reviewed_at:
        when = candidate.reviewed_at.strftime("%b %-d, %H:%M")
        who = f'<small class="who">by {_e(candidate.reviewed_by)} · {_e(when)}</small>'
    badge = '<span class="pill hero" data-testid="hero-badge">Hero</span> ' if is_hero else ""
    note = f'<p class="error" role="alert" data-testid="review-message">{_e(message)}</p>' if message else ""
    stars = stars_html(int(getattr(candidate, "rating", 0) or 0))
    in_cloud = getattr(candidate.run, "cloud_cost", None) is not None
    actions = _actions(url, pk, status, candidate.seed, csrf, is_hero, in_inbox, in_cloud) if can_act else ""
    seed_text = "no seed (cloud)" if in_cloud else f"seed {url.seeds}"
    badge += draft_label(candidate.run)
    badge += cloud_label(candidate.run)
    if can_act:  # a draft's keeper: Final render beside Regenerate
        actions += final_render_button(candidate.run, status, str(url.regenerate), csrf)
    return mark_safe(
        f'<figure class="tile review-{_e(status)}{" is-hero" if is_hero else ""}" id="candidate-{pk}" tabindex="0" '
        f'data-candidate data-full-url="{detail}" data-regenerate-url="{"" if in_cloud else _e(url.regenerate)}" '
        f'aria-label="{label}, {_e(status)}"><a class="open" href="{detail}" tabindex="-1">'
        f'<img src="{_e(url.thumb_1x)}" srcset="{_e(url.srcset)}" sizes="(max-width: 600px) 44vw, 240px" '
        f'width="240" height="{int(url.height_240)}" loading="lazy" decoding="async" alt="{label}"></a>'
        f'<figcaption><span class="seed" data-testid="candidate-seed">{_e(seed_text)}</span> '
        f'<span class="state state-{_e(status)}" data-testid="review-state">'
        f"{_e(_STATE_LABELS.get(status, status.title()))}</span> {stars}{badge}{who}{note}</figcaption>"
        f"{actions}</figure>"
    )
