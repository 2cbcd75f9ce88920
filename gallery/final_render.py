"""The draft label and the Final render button of a draft run's tiles (``gallery.tiles``).

Plain f-strings like the rest of the tile (the grid draws hundreds of them). The button posts
``mode=final`` to the candidate's regenerate view: one click queues the keeper at full quality
(``generation.services.run_regenerate``), which then goes through review like any run.

Final render is offered on every candidate of a draft run, pending or approved: pressing it is
the editor's "this one", and asking for an approval first would add a click to every cull. A
rejected candidate is culled, so it does not offer it (Undo brings it back).
"""

from __future__ import annotations

from html import escape
from typing import Any


def draft_label(run: Any) -> str:
    """The "draft" pill of a draft run's tile ("" otherwise), saying which cache made it fast."""
    if not getattr(run, "draft", False):
        return ""
    kind = (run.draft_cache or {}).get("kind")
    title = f"A fast draft: {kind} cache, {run.steps} steps" if kind else f"A fast draft: {run.steps} steps, no cache"
    return f'<span class="pill draft" data-testid="draft-label" title="{escape(title)}">draft</span> '


def final_render_button(run: Any, status: str, regenerate_url: str, csrf: str) -> str:
    """The tile menu's Final render form for a draft's candidate that is not rejected ("" otherwise)."""
    if not getattr(run, "draft", False) or status == "rejected":
        return ""
    url = escape(regenerate_url, quote=True)
    return (
        f'<form method="post" action="{url}" class="inline final-render">'
        f'<input type="hidden" name="csrfmiddlewaretoken" value="{escape(csrf, quote=True)}">'
        '<input type="hidden" name="mode" value="final">'
        '<button data-testid="final-render-button" title="This seed and prompt at full quality, no cache">'
        "Final render</button></form>"
    )
