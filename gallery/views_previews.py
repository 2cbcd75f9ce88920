"""The live preview of a running run's candidate, as the run card shows it while it forms."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from gallery.access import login_required_401
from generation.previews import preview_image


@login_required_401
@require_GET
def run_preview(request: HttpRequest, pk: int, index: int) -> HttpResponse:
    """The latest preview JPEG of candidate ``index`` of run ``pk``: never cached, since the
    same URL shows a newer picture a moment later (the card adds the step to bust the cache)."""
    data = preview_image(run_id=pk, index=index)
    if data is None:
        response = HttpResponse(
            "No preview: the run is not running, or this candidate has none yet.", status=404, content_type="text/plain"
        )
    else:
        response = HttpResponse(data, content_type="image/jpeg")
    response["Cache-Control"] = "no-store"
    return response
