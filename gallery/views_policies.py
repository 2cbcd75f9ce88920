"""Stop on an auto-publish (issue 20, review policies): the editor's veto during the grace period."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRefresh

from gallery.access import editor_required
from gallery.policies import candidate_stop_auto_publish
from generation.models import Candidate


@editor_required
@require_POST
def candidate_stop_auto_publish_view(request: HttpRequest, pk: int) -> HttpResponse:
    candidate = get_object_or_404(Candidate.objects.select_related("run__article"), pk=pk)
    at = candidate.auto_publish_at
    if candidate_stop_auto_publish(candidate=candidate, by=request.user):
        assert at is not None
        messages.success(
            request,
            f"Stopped: candidate seed {candidate.seed} will not be published at "
            f"{timezone.localtime(at):%H:%M}. It stays approved; publish it yourself when you want.",
        )
    else:
        messages.warning(request, "Nothing was scheduled any more: it was published, stopped or decided meanwhile.")
    if getattr(request, "htmx", False):
        return HttpResponseClientRefresh()
    article = candidate.run.article
    return redirect("gallery:article_detail", slug=article.slug) if article else redirect("gallery:inbox")
