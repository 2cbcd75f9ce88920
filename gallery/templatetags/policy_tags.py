"""The article page's "Publishes at 14:05 - Stop" line for what an auto-publish preset scheduled."""

from __future__ import annotations

from typing import Any

from django import template
from django.db.models import Q

from generation.models import Candidate

register = template.Library()


@register.inclusion_tag("gallery/_auto_publish.html")
def auto_publish_schedule(article: Any) -> dict[str, Any]:
    # One query for both (the article page is measured by bench/dashboard.py).
    mine = Candidate.objects.filter(Q(auto_publish_at__isnull=False) | ~Q(auto_publish_note=""), run__article=article)
    shown = ("sha256", "seed", "auto_publish_at", "auto_publish_note", "run__preset__name")  # what the line shows
    rows = list(mine.select_related("run__preset").only(*shown).order_by("-pk")[:20])
    return {
        "scheduled": sorted((c for c in rows if c.auto_publish_at), key=lambda c: c.auto_publish_at),
        "refused": [c for c in rows if c.auto_publish_note][:3],
    }
