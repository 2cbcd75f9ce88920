"""The run card's live previews (``templates/gallery/_run_previews.html``)."""

from __future__ import annotations

from django import template

from generation.models import GenerationRun, RunPreview
from generation.previews import previews_of

register = template.Library()


@register.simple_tag
def run_previews(run: GenerationRun) -> list[RunPreview]:
    """The previews of ``run``'s candidates while it runs (index and step, never the bytes);
    none otherwise, without a query."""
    if run.status != GenerationRun.Status.RUNNING:
        return []
    return previews_of(run_id=run.pk)
