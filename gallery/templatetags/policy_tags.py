"""The article page's "Publishes at 14:05 - Stop" line for what an auto-publish preset scheduled."""

from __future__ import annotations

from typing import Any

from django import template

from generation.models import Candidate

register = template.Library()


@register.inclusion_tag("gallery/_auto_publish.html")
def auto_publish_schedule(article: Any) -> dict[str, Any]:
    mine = Candidate.objects.filter(run__article=article).select_related("run__preset")
    return {
        "scheduled": list(mine.filter(auto_publish_at__isnull=False).order_by("auto_publish_at")),
        "refused": list(mine.exclude(auto_publish_note="").order_by("-pk")[:3]),
    }
