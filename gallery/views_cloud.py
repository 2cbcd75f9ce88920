"""Make in the cloud: an editor asks the cloud engine (``generation.cloud``) for an article's
hero images, at the price the button showed. The view does not exist while the cloud is off."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from gallery.access import editor_required
from gallery.models import Article
from generation.cloud import cloud_enabled, cloud_run_submit, money
from generation.models import RequestedVia


@editor_required
@require_POST
def article_cloud(request: HttpRequest, slug: str) -> HttpResponse:
    """Queue a cloud run, or say why not (the budget's refusal names what is left)."""
    if not cloud_enabled():
        raise Http404("The cloud engine is off (HOFFDESK_CLOUD_API_KEY is not set).")
    article = get_object_or_404(Article, slug=slug)
    try:
        run = cloud_run_submit(
            article=article,
            count=request.POST.get("count"),
            requested_by=request.user,
            requested_via=RequestedVia.DASHBOARD,
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        assert run.cloud_cost is not None
        messages.success(request, f"Run {run.pk} queued in the cloud: {run.count} image(s), {money(run.cloud_cost)}.")
    return redirect(article)
