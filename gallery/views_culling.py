"""Culling views: star ratings from the keys (0-5) on the grid, in the loupe and in compare.

The answer is the same candidate tile the review view answers with, so the grid swaps it in
place and the loupe and compare read the new stars and state from it.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from gallery.access import editor_required
from gallery.ratings import candidate_rate, rating_from_text
from gallery.views import HtmxHttpRequest, _back_to_candidate, _candidate


@editor_required
@require_POST
def candidate_rate_view(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Give a candidate 0-5 stars (0 clears them); bad input answers 400 naming the field."""
    candidate = _candidate(pk)
    try:
        candidate_rate(candidate=candidate, rating=rating_from_text(request.POST.get("rating", "")), by=request.user)
    except ValidationError as exc:
        return _back_to_candidate(candidate, 400, " ".join(exc.messages))
    if request.htmx:
        context = {"candidate": candidate, "run": candidate.run, "article": candidate.run.article, "message": ""}
        response = render(request, "gallery/article_detail.html#candidate-tile", context)
        response["HX-Trigger"] = "review-changed"
        return response
    messages.success(request, f"Seed {candidate.seed}: {candidate.rating} of 5 stars.")
    return _back_to_candidate(candidate, 200)
