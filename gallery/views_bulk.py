"""Bulk decisions on the article page: many candidates in one request, and one Undo for them.

Plain form posts that go back to the article page (post/redirect/get), so the grid, its counts
and the history are drawn once by the page itself and cannot disagree with what was written.
The redirect carries the batch id, and the page offers its Undo.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from gallery.access import editor_required
from gallery.bulk import BulkInvalid, BulkOutcome, batch_undo, candidates_decide, seen_from_post
from gallery.models import Article


def _bad_request(exc: BulkInvalid) -> HttpResponse:
    return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")


def _rating(value: str | None) -> int | None:
    if not value:
        return None
    if not value.strip().isdigit():
        raise BulkInvalid("rating", f"a rating is a whole number from 0 to 5, not {value[:20]!r}.")
    return int(value)


def _back(request: HttpRequest, outcome: BulkOutcome, *, offer_undo: bool) -> HttpResponseRedirect:
    """To the article the candidates belong to (the Inbox when none), telling what happened."""
    (messages.warning if outcome.skipped else messages.success)(request, outcome.summary())
    touched = [c.pk for c in outcome.decided] + [c.pk for c, _ in outcome.skipped]
    article = Article.objects.filter(runs__candidates__pk__in=touched).first()
    url = article.get_absolute_url() if article is not None else reverse("gallery:inbox")
    if offer_undo and outcome.decided:
        return HttpResponseRedirect(f"{url}?batch={outcome.batch}#runs")
    return HttpResponseRedirect(f"{url}#runs")


@editor_required
@require_POST
def candidates_bulk(request: HttpRequest) -> HttpResponse:
    """Approve, reject or rate the posted candidates (``c`` = ``id:state seen``) as one batch."""
    try:
        seen = seen_from_post(request.POST.getlist("c"))
        outcome = candidates_decide(
            seen=seen,
            action=request.POST.get("action", ""),
            by=request.user,
            rating=_rating(request.POST.get("rating")),
            reason=request.POST.get("reason", ""),
        )
    except BulkInvalid as exc:
        return _bad_request(exc)
    return _back(request, outcome, offer_undo=True)


@editor_required
@require_POST
def batch_undo_view(request: HttpRequest, batch: uuid.UUID) -> HttpResponse:
    """One Undo for a whole batch: each candidate back to its state before it."""
    try:
        outcome = batch_undo(batch=batch, by=request.user)
    except BulkInvalid as exc:
        return _bad_request(exc)
    return _back(request, outcome, offer_undo=False)
