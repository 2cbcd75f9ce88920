"""Editorial pages: small views that fetch, call a service and render."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Count, Max, Prefetch
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from gallery.forms import GenerateForm
from gallery.models import Article
from generation.models import Candidate, GenerationRun
from generation.services import run_cancel as cancel_run
from generation.services import run_submit


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


@require_GET
@login_required
def article_list(request: HttpRequest) -> HttpResponse:
    articles = Article.objects.annotate(
        run_count=Count("runs", distinct=True),
        candidate_count=Count("runs__candidates", distinct=True),
        last_run_at=Max("runs__queued_at"),
    ).order_by("-updated_at", "slug")
    return render(request, "gallery/article_list.html", {"articles": articles})


def _article_page(request: HttpRequest, article: Article, form: GenerateForm, status: int = 200) -> HttpResponse:
    runs = article.runs.select_related("preset").prefetch_related(
        Prefetch("candidates", queryset=Candidate.objects.order_by("index"))
    )[:20]
    return render(
        request, "gallery/article_detail.html", {"article": article, "form": form, "runs": runs}, status=status
    )


@require_GET
@login_required
def article_detail(request: HttpRequest, slug: str) -> HttpResponse:
    article = get_object_or_404(Article, slug=slug)
    form = GenerateForm(initial={"count": "4"})
    return _article_page(request, article, form)


@require_POST
@login_required
def run_create(request: HttpRequest, slug: str) -> HttpResponse:
    article = get_object_or_404(Article, slug=slug)
    form = GenerateForm(request.POST)
    if form.is_valid():
        try:
            run_submit(article=article, requested_by=request.user, **form.cleaned_data)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, messages)
        else:
            return redirect(article)
    return _article_page(request, article, form, status=400)


@require_GET
@login_required
def run_card(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(GenerationRun.objects.prefetch_related("candidates"), pk=pk)
    return render(request, "gallery/article_detail.html#run-card", {"run": run})


@require_POST
@login_required
def run_cancel(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(GenerationRun, pk=pk)
    cancel_run(run=run)
    if request.htmx:
        return render(request, "gallery/article_detail.html#run-card", {"run": run})
    return redirect(run.article)


@require_GET
@login_required
def candidate_image(request: HttpRequest, pk: int) -> FileResponse:
    candidate = get_object_or_404(Candidate, pk=pk)
    response = FileResponse(candidate.image.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=86400"
    return response
