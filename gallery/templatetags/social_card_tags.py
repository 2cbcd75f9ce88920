"""The social card's snippets for the publication card: Open Graph tags and the CSS overlay."""

from __future__ import annotations

from typing import Any

from django import template

from gallery.social_card import open_graph_snippet, overlay_snippet

register = template.Library()


@register.filter(name="open_graph_snippet")
def open_graph_snippet_filter(publication: Any) -> str:
    return open_graph_snippet(publication)


@register.filter(name="overlay_snippet")
def overlay_snippet_filter(publication: Any) -> str:
    return overlay_snippet(publication)
