"""Template helpers of the bulk toolbar (``gallery.views_bulk``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from html import escape
from typing import Any

from django import template
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

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


@register.simple_tag(takes_context=True)
def reject_not_kept(context: Any, runs_or_candidates: Iterable[Any], label: str = "") -> SafeString:
    """The "Reject all not kept" form for a run's candidates or an article's runs: one bulk
    reject of the undecided ones, each sent with the state the editor saw (so a candidate another
    editor decided meanwhile is skipped and named), and the count in its confirmation. Built in
    Python, not as a template include: the article page draws it once per run and is measured by
    bench/dashboard.py (an include per run cost ~1 ms each there)."""
    can_act = context.get("can_act")
    pending = not_kept(runs_or_candidates) if (can_act() if callable(can_act) else can_act) else []
    if not pending:
        return mark_safe("")
    n = len(pending)
    plural = "" if n == 1 else "s"
    csrf = escape(str(context.get("csrf_token", "")), quote=True)
    fields = "".join(f'<input type="hidden" name="c" value="{c.pk}:{escape(c.review_status)}">' for c in pending)
    suffix = f" {escape(label)}" if label else ""
    return mark_safe(
        f'<form method="post" action="{reverse("gallery:candidates_bulk")}" class="inline reject-not-kept" '
        f'data-testid="reject-not-kept" data-confirm="Reject {n} candidate{plural} not kept?">'
        f'<input type="hidden" name="csrfmiddlewaretoken" value="{csrf}">'
        '<input type="hidden" name="action" value="reject">'
        f'{fields}<button type="submit" class="reject">Reject all not kept ({n}){suffix}</button></form>'
    )


@register.simple_tag
def batch_decisions(value: str | None) -> int:
    """How many decisions the batch in ``?batch=`` made (0 when it is not one)."""
    try:
        return batch_size(batch=uuid.UUID(str(value))) if value else 0
    except ValueError:
        return 0
