"""Template helpers of the bulk toolbar (``gallery.views_bulk``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from django import template

from gallery.bulk import batch_size

register = template.Library()


@register.filter
def not_kept(runs_or_candidates: Iterable[Any]) -> list[Any]:
    """The undecided candidates of a run's candidates, or of a list of runs (their prefetched
    candidates): what "Reject all not kept" rejects."""
    found: list[Any] = []
    for item in runs_or_candidates:
        candidates = item.candidates.all() if hasattr(item, "candidates") else [item]
        found += [c for c in candidates if c.review_status == "pending"]
    return found


@register.simple_tag
def batch_decisions(value: str | None) -> int:
    """How many decisions the batch in ``?batch=`` made (0 when it is not one)."""
    try:
        return batch_size(batch=uuid.UUID(str(value))) if value else 0
    except ValueError:
        return 0
