"""The social card's snippets for the publication card: Open Graph tags and the CSS overlay.

``gallery.social_card`` is imported on first use: it draws with NumPy, and Django imports every
tag library when the template engine starts, so a top-level import put NumPy into every web
process (~20 MB) for a card only a publication shows."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter(name="open_graph_snippet")
def open_graph_snippet_filter(publication: Any) -> str:
    from gallery.social_card import open_graph_snippet

    return open_graph_snippet(publication)


@register.filter(name="overlay_snippet")
def overlay_snippet_filter(publication: Any) -> str:
    from gallery.social_card import overlay_snippet

    return overlay_snippet(publication)
