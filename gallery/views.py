"""Editorial pages: small views that fetch, call a model method or a service, and render.

Pages redirect an anonymous visitor to the login page; fragments and files answer 401
(``gallery.access``). Anything that changes state needs the editors or admins group.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Exists, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRefresh, reswap, retarget
from django_htmx.middleware import HtmxDetails

from gallery.access import editor_required, login_required_401
from gallery.alt_text import alt_text_suggest
from gallery.cdn import cdn_purge_configured
from gallery.forms import FileForm, GenerateForm, PublishForm, RegenerateForm, SeriesLookForm, WandForm
from gallery.models import Article, Publication, Series
from gallery.publishing import (
    PublishConflict,
    can_make_hero_size,
    hero_shortfall,
    publication_purge_again,
    publication_request,
    publication_retry,
    publication_unpublish,
)
from gallery.services import NOT_FILED, ReviewConflict, article_set_hero, candidate_file_to_article, candidate_review
from gallery.wand import article_wand, image_styles
from generation.models import Candidate, GenerationRun, RequestedVia, ReviewEvent
from generation.services import run_cancel as cancel_run
from generation.services import run_regenerate, run_submit
from generation.thumbnails import THUMBNAIL_WIDTHS, NoSuchThumbnailWidth, thumbnail_ensure


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


ARTICLES_PER_PAGE = 25
RUNS_ON_PAGE = 20
INBOX_RUNS_PER_PAGE = 20
ARTICLES_TO_FILE_TO = 200  # the newest articles offered by the filing field's list; any slug may be typed
EVENTS_ON_PAGE = 30
LIST_FILTERS = {
    "needs-hero": ("Needs a hero", Q(hero_candidate__isnull=True)),
    "waiting": ("Candidates waiting for review", Q(waiting_count__gt=0)),
    "approved": ("Has an approved candidate", Q(approved_count__gt=0)),
    "published": ("Published", Q()),  # an Exists() filter, see _article_rows
    "rated": ("Rated 4 or more", Q()),  # an Exists() filter, see _article_rows
}
LIST_SORTS = {
    "updated": ("Recently updated", ["-updated_at", "slug"]),
    "title": ("Title", ["title", "slug"]),
    "waiting": ("Most waiting", ["-waiting_count", "-updated_at", "slug"]),
}


def _candidates_in(status: str) -> Coalesce:
    """Per article: how many of its candidates are in ``status`` (a correlated COUNT)."""
    counted = (
        Candidate.objects.filter(run__article=OuterRef("pk"), review_status=status)
        .order_by()
        .values("run__article")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def _article_rows(q: str, filter_key: str, sort_key: str) -> QuerySet[Article]:
    """The list's articles, filtered and sorted. Counts are computed over every article only
    when a filter or the sort needs them; otherwise ``_annotate_page`` adds them to one page."""
    rows = Article.objects.all()
    if q:
        rows = rows.filter(Q(title__icontains=q) | Q(slug__icontains=q))
    if filter_key in ("waiting", "approved") or sort_key == "waiting":
        rows = rows.annotate(
            waiting_count=_candidates_in(Candidate.Review.PENDING),
            approved_count=_candidates_in(Candidate.Review.APPROVED),
        )
    if filter_key == "published":
        published = Publication.objects.filter(article=OuterRef("pk"), status=Publication.Status.PUBLISHED)
        rows = rows.filter(Exists(published))
    elif filter_key == "rated":
        rows = rows.filter(Exists(Candidate.objects.filter(run__article=OuterRef("pk"), rating__gte=4)))
    elif filter_key in LIST_FILTERS:
        rows = rows.filter(LIST_FILTERS[filter_key][1])
    return rows.order_by(*LIST_SORTS.get(sort_key, LIST_SORTS["updated"])[1]).only("pk")


def _annotate_page(ids: list[int]) -> list[Article]:
    """One page's articles with their counts, hero and newest candidate: three queries."""
    newest = Candidate.objects.filter(run__article=OuterRef("pk")).order_by("-created_at", "-pk").values("pk")[:1]
    published = Publication.objects.filter(article=OuterRef("pk"), status=Publication.Status.PUBLISHED)
    articles = Article.objects.select_related("hero_candidate").annotate(
        newest_candidate_id=Subquery(newest), has_published=Exists(published)
    )
    by_id = articles.in_bulk(ids)
    counts = (
        Candidate.objects.filter(run__article__in=ids, review_status__in=["pending", "approved"])
        .values_list("run__article", "review_status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    tally = {(article_id, status): n for article_id, status, n in counts}
    thumbs = [getattr(a, "newest_candidate_id", None) for a in by_id.values() if a.hero_candidate is None]
    newest_candidates = Candidate.objects.in_bulk([pk for pk in thumbs if pk])
    page: list[Article] = []
    for pk in ids:
        article = by_id[pk]
        article.waiting_count = tally.get((pk, "pending"), 0)  # type: ignore[attr-defined]
        article.approved_count = tally.get((pk, "approved"), 0)  # type: ignore[attr-defined]
        newest_id = getattr(article, "newest_candidate_id", None)
        article.thumb = article.hero_candidate or newest_candidates.get(newest_id)  # type: ignore[attr-defined]
        page.append(article)
    return page


@login_required
@require_GET
def article_list(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("q", "").strip()[:200]
    filter_key = request.GET.get("filter", "")
    sort_key = request.GET.get("sort", "updated") if request.GET.get("sort") in LIST_SORTS else "updated"
    page = Paginator(_article_rows(q, filter_key, sort_key), ARTICLES_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "articles": _annotate_page([article.pk for article in page]),
        "q": q,
        "filter_key": filter_key if filter_key in LIST_FILTERS else "",
        "sort_key": sort_key,
        "filters": {key: label for key, (label, _) in LIST_FILTERS.items()},
        "sorts": {key: label for key, (label, _) in LIST_SORTS.items()},
        "query_without_page": _query_without(request, "page"),
        "wand_form": WandForm(styles=image_styles()),
    }
    return render(request, "gallery/article_list.html", context)


def _query_without(request: HttpRequest, key: str) -> str:
    params = request.GET.copy()
    params.pop(key, None)
    return params.urlencode()


def _queue_places() -> dict[int, int]:
    """Place in the GPU queue of every queued run (1 = next), in the order the worker claims them
    (its loaded model first, within HOFFDESK_SWITCH_WAIT), in two queries."""
    from generation.health import gpu_worker_loaded_profile

    loaded = gpu_worker_loaded_profile()
    return GenerationRun.queue_places(loaded=loaded, switch_wait=settings.HOFFDESK_SWITCH_WAIT)


TILE_FIELDS = (
    "run_id", "index", "seed", "variation_seed", "width", "height", "sha256", "review_status", "reviewed_at",
    "reviewed_by__username", "rating",
)  # fmt: skip


def _runs_with_candidates(best_rated_first: bool = False) -> Prefetch:
    """A run's candidates with just what a tile shows (fewer columns, fewer conversions);
    ``best_rated_first``: the article page's ``?order=rating``, within each run."""
    order = ("-rating", "index") if best_rated_first else ("index",)
    tiles = Candidate.objects.select_related("reviewed_by").only(*TILE_FIELDS).order_by(*order)
    return Prefetch("candidates", queryset=tiles)


def _article_page(request: HttpRequest, article: Article, form: GenerateForm, status: int = 200) -> HttpResponse:
    runs = list(
        article.runs.select_related("preset", "requested_by", "parent", "api_token", "comfy_workflow").prefetch_related(
            _runs_with_candidates(request.GET.get("order") == "rating")
        )[:RUNS_ON_PAGE]
    )
    places = _queue_places() if any(run.status == GenerationRun.Status.QUEUED for run in runs) else {}
    for run in runs:
        run.place_in_queue = places.get(run.pk)  # type: ignore[attr-defined]
    publication = article.publications.select_related("candidate", "requested_by").first()
    live = None  # the live one, when the newest publication is not it (none at all: no query)
    if publication is not None and publication.status != Publication.Status.PUBLISHED:
        live = article.publications.filter(status=Publication.Status.PUBLISHED).select_related("candidate").first()
    series = Series.objects.select_related("preset").filter(name=article.series).first() if article.series else None
    context: dict[str, Any] = {
        "article": article,
        "form": form,
        "runs": runs,
        "publication": publication,
        "live_publication": live,
        **_takedown_facts(),
        "events": _events(article),
        "thumbnail_widths": THUMBNAIL_WIDTHS,
        "wand_form": WandForm(styles=image_styles()),
        "series": series,
    }
    if series is not None:
        context["series_form"] = SeriesLookForm(initial={"seed": series.seed, "preset": series.preset_id})
    return render(request, "gallery/article_detail.html", context, status=status)


def _events(article: Article) -> QuerySet[ReviewEvent]:
    return ReviewEvent.objects.filter(candidate__run__article=article).select_related("actor", "candidate")[
        :EVENTS_ON_PAGE
    ]


def _show_errors(form: Any, exc: ValidationError) -> None:
    """A service's field -> message errors next to the form's fields (others at the top)."""
    for field, errors in exc.message_dict.items():
        form.add_error(field if field in form.fields else None, errors)


@login_required
@require_GET
def article_detail(request: HttpRequest, slug: str) -> HttpResponse:
    article = get_object_or_404(Article.objects.select_related("hero_candidate"), slug=slug)
    form = GenerateForm(initial={"count": "4"})
    return _article_page(request, article, form)


@login_required_401
@require_GET
def article_history(request: HttpRequest, slug: str) -> HttpResponse:
    """The decision history fragment, reloaded after every review on the page."""
    article = get_object_or_404(Article, slug=slug)
    return render(request, "gallery/article_detail.html#history", {"article": article, "events": _events(article)})


@editor_required
@require_POST
def run_create(request: HttpRequest, slug: str) -> HttpResponse:
    article = get_object_or_404(Article, slug=slug)
    form = GenerateForm(request.POST)
    if form.is_valid():
        try:
            run_submit(
                article=article, requested_by=request.user, requested_via=RequestedVia.DASHBOARD, **form.cleaned_data
            )
        except ValidationError as exc:
            _show_errors(form, exc)
        else:
            return redirect(article)
    return _article_page(request, article, form, status=400)


@editor_required
@require_POST
def article_wand_view(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """The Magic Wand: queue a hero run in one click. htmx gets the new run card at once (or
    the reason it was refused, in the wand's message slot); a plain form post goes back to the
    article page."""
    article = get_object_or_404(Article.objects.select_related("hero_candidate"), slug=slug)
    form = WandForm(request.POST, styles=image_styles())
    try:
        if not form.is_valid():
            raise ValidationError({f: [str(e) for e in errs] for f, errs in form.errors.items()})
        run = article_wand(
            article=article,
            requested_by=request.user,
            style=form.cleaned_data["style"] or None,
            requested_via=RequestedVia.DASHBOARD,
        )
    except ValidationError as exc:
        problems = [m for messages_ in exc.message_dict.values() for m in messages_]
        if request.htmx:
            response = render(
                request, "gallery/article_detail.html#wand-message", {"article": article, "problems": problems}
            )
            response.status_code = 400
            return retarget(reswap(response, "innerHTML"), f"#wand-message-{article.slug}")
        for problem in problems:
            messages.error(request, f"Magic Wand: {problem}")
        return redirect(article)
    if request.htmx:
        return _run_card(request, run)
    return HttpResponseRedirect(f"{article.get_absolute_url()}#run-{run.pk}")


@editor_required
@require_POST
def series_look(request: HttpRequest, slug: str) -> HttpResponse:
    """An editor sets the seed and preset every Magic Wand run of the article's series uses."""
    article = get_object_or_404(Article, slug=slug)
    series = get_object_or_404(Series, name=article.series) if article.series else None
    if series is None:
        return HttpResponse("This article is not in a series.", status=400, content_type="text/plain")
    form = SeriesLookForm(request.POST)
    if not form.is_valid():
        for field, errors in form.errors.items():
            for error in errors:
                messages.error(request, f"Series look, {field}: {error}")
        return redirect(article)
    Series.objects.filter(pk=series.pk).update(
        seed=form.cleaned_data["seed"], preset=form.cleaned_data["preset"], look_locked=True
    )
    messages.success(request, f"The series “{series.name}” now starts from this seed and preset.")
    return redirect(article)


def _home_url(run: GenerationRun) -> str:
    """Where a run lives on the dashboard: its article's page, or the Inbox when it has none."""
    return run.article.get_absolute_url() if run.article is not None else reverse("gallery:inbox")


def _filed_runs() -> QuerySet[GenerationRun]:
    """Runs filed from the Inbox: each holds one candidate moved to an article."""
    return GenerationRun.objects.filter(requested_via=RequestedVia.FILED).select_related("article").order_by("pk")


def _filed_children() -> Prefetch:
    """An Inbox run's candidates that were filed, as the runs that now hold them."""
    return Prefetch("children", queryset=_filed_runs(), to_attr="filed_children")


def _run_card(request: HttpRequest, run: GenerationRun) -> HttpResponse:
    if run.status == GenerationRun.Status.QUEUED:
        run.place_in_queue = _queue_places().get(run.pk)  # type: ignore[attr-defined]
    if run.article_id is None and not hasattr(run, "filed_children"):
        run.filed_children = list(_filed_runs().filter(parent=run))  # type: ignore[attr-defined]
    article = run.article
    response = render(request, "gallery/article_detail.html#run-card", {"run": run, "article": article})
    if article is not None and run.is_finished:
        # The card filled in: the article list's row for it says how many now wait for review
        # (htmx swaps it out of band; a page without that row, like the article's own, drops it).
        waiting = Candidate.objects.filter(run__article=article, review_status="pending").count()
        row = {"slug": article.slug, "waiting_count": waiting}
        response.write(render_to_string("gallery/article_list.html#waiting-count", {"article": row, "oob": True}))
    return response


@login_required_401
@require_GET
def run_card(request: HttpRequest, pk: int) -> HttpResponse:
    runs = GenerationRun.objects.select_related(
        "article__hero_candidate", "preset", "requested_by", "parent", "api_token", "comfy_workflow"
    )
    run = get_object_or_404(runs.prefetch_related(_runs_with_candidates()), pk=pk)
    return _run_card(request, run)


def _inbox_runs() -> QuerySet[GenerationRun]:
    """Runs without an article, newest first, less those whose every candidate was filed."""
    filed = GenerationRun.objects.filter(parent=OuterRef("pk"), requested_via=RequestedVia.FILED)
    left = Candidate.objects.filter(run=OuterRef("pk"))
    runs = GenerationRun.objects.filter(article__isnull=True).exclude(Exists(filed) & ~Exists(left))
    return runs.order_by("-queued_at", "-pk")


@login_required
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    """The images the image APIs asked for (no article yet): the same run cards and review as an
    article page, and a way to file a candidate to an article."""
    runs = _inbox_runs().select_related("preset", "requested_by", "parent", "api_token")
    runs = runs.prefetch_related(_runs_with_candidates(), _filed_children())
    page = Paginator(runs, INBOX_RUNS_PER_PAGE).get_page(request.GET.get("page"))
    places = _queue_places() if any(run.status == GenerationRun.Status.QUEUED for run in page) else {}
    for run in page:
        run.place_in_queue = places.get(run.pk)  # type: ignore[attr-defined]
    return render(request, "gallery/inbox.html", {"page": page, "runs": page.object_list, "article": None})


@editor_required
@require_POST
def run_cancel(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(GenerationRun.objects.select_related("article__hero_candidate"), pk=pk)
    cancel_run(run=run)
    if request.htmx:
        return _run_card(request, run)
    return HttpResponseRedirect(f"{_home_url(run)}#run-{run.pk}")


def _candidate(pk: int) -> Candidate:
    related = ("run__article__hero_candidate", "run__preset", "reviewed_by")
    return get_object_or_404(Candidate.objects.select_related(*related), pk=pk)


@login_required_401
@require_GET
def candidate_image(request: HttpRequest, pk: int) -> FileResponse:
    """The full PNG with its recipe; ``?download=1`` saves it under a name that says what it is."""
    candidate = _candidate(pk)
    download = request.GET.get("download") == "1"
    owner = candidate.run.article.slug if candidate.run.article is not None else "inbox"
    filename = f"{owner}-run{candidate.run_id}-seed{candidate.seed}.png"
    response = FileResponse(
        candidate.image.open("rb"), content_type="image/png", as_attachment=download, filename=filename
    )
    response["Cache-Control"] = "private, max-age=86400"
    return response


@login_required_401
@require_GET
def candidate_thumbnail(request: HttpRequest, pk: int, version: str, width: int) -> HttpResponseBase:
    """A WebP thumbnail; its URL holds the PNG's hash, so it may be cached for a year."""
    candidate = get_object_or_404(Candidate.objects.only("pk", "image", "sha256"), pk=pk)
    if version != candidate.sha256[:16]:
        return HttpResponseRedirect(reverse("gallery:candidate_thumbnail", args=[pk, candidate.sha256[:16], width]))
    try:
        name = thumbnail_ensure(image_name=str(candidate.image.name), sha256=candidate.sha256, width=width)
    except NoSuchThumbnailWidth as exc:
        return HttpResponse(str(exc), status=404, content_type="text/plain")
    response = FileResponse(candidate.image.storage.open(name, "rb"), content_type="image/webp")
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


def _candidate_page(
    request: HttpRequest, candidate: Candidate, *, lightbox: bool, file_form: FileForm | None = None, status: int = 200
) -> HttpResponse:
    in_inbox = candidate.run.article is None
    context = {
        "candidate": candidate,
        "run": candidate.run,
        "article": candidate.run.article,
        "events": candidate.events.select_related("actor")[:EVENTS_ON_PAGE],
        "in_lightbox": lightbox,
        "file_form": file_form or (FileForm() if in_inbox else None),  # a refusal is shown either way
        "articles_to_file_to": (
            Article.objects.order_by("-updated_at").values("slug", "title")[:ARTICLES_TO_FILE_TO] if in_inbox else []
        ),
        **_hero_size_offer(candidate),
    }
    template = "gallery/candidate_detail.html#full" if lightbox else "gallery/candidate_detail.html"
    return render(request, template, context, status=status)


@login_required
@require_GET
def candidate_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The full view: its own page, or the lightbox's content when htmx asks. An Inbox
    candidate's view also holds the form that files it to an article."""
    return _candidate_page(request, _candidate(pk), lightbox=bool(request.htmx))


@editor_required
@require_POST
def candidate_file(request: HttpRequest, pk: int) -> HttpResponse:
    """File an Inbox candidate to an article: it becomes that article's candidate, history kept."""
    candidate = _candidate(pk)
    form = FileForm(request.POST)
    if form.is_valid():
        article = form.cleaned_data["article"]
        try:
            candidate_file_to_article(candidate=candidate, article=article, by=request.user)
        except ValidationError as exc:
            _show_errors(form, exc)
        else:
            messages.success(request, f"Seed {candidate.seed} is now a candidate of “{article.title}”.")
            return HttpResponseRedirect(f"{article.get_absolute_url()}#candidate-{candidate.pk}")
    return _candidate_page(request, candidate, lightbox=False, file_form=form, status=400)


@editor_required
@require_POST
def candidate_decide(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Approve, reject (with an optional reason) or undo; a lost race shows the current state."""
    candidate = _candidate(pk)
    message, status = "", 200
    try:
        candidate_review(
            candidate=candidate,
            action=request.POST.get("action", ""),
            by=request.user,
            expected=request.POST.get("expected") or None,
            reason=request.POST.get("reason", ""),
        )
    except ValidationError as exc:
        message, status = " ".join(exc.messages), 400
    except ReviewConflict as exc:
        candidate, message, status = exc.candidate, str(exc), 409
    if request.htmx:
        context = {"candidate": candidate, "run": candidate.run, "article": candidate.run.article, "message": message}
        response = render(request, "gallery/article_detail.html#candidate-tile", context)
        response["HX-Trigger"] = "review-changed"
        return response
    if message and status != 400:
        messages.warning(request, message)
    return _back_to_candidate(candidate, status, message)


def _back_to_candidate(candidate: Candidate, status: int, message: str = "") -> HttpResponse:
    """Back to the candidate on its article page; bad input (400) gets its message instead."""
    if status == 400:
        return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
    return HttpResponseRedirect(f"{_home_url(candidate.run)}#candidate-{candidate.pk}")


@editor_required
@require_POST
def candidate_make_hero(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    candidate = _candidate(pk)
    try:
        if candidate.run.article is None:
            raise ValidationError({"candidate": NOT_FILED})
        article_set_hero(article=candidate.run.article, candidate=candidate, by=request.user)
    except (ReviewConflict, ValidationError) as exc:
        messages.warning(request, str(exc) if isinstance(exc, ReviewConflict) else " ".join(exc.messages))
    else:
        messages.success(request, f"Candidate seed {candidate.seed} is now the hero of this article.")
    if request.htmx:
        return HttpResponseClientRefresh()
    return _back_to_candidate(candidate, 200)


def _compare(request: HttpRequest, article: Article | None) -> HttpResponse:
    ids = [int(value) for value in request.GET.getlist("c") if value.isdigit()][:5]
    candidates = list(
        Candidate.objects.filter(pk__in=ids, run__article=article).select_related("run", "reviewed_by").order_by("pk")
    )
    where = "of this article" if article is not None else "in the Inbox"
    error = "" if 2 <= len(candidates) <= 4 else f"Pick two to four candidates {where} to compare."
    context = {"article": article, "candidates": candidates, "error": error}
    return render(request, "gallery/compare.html", context, status=400 if error else 200)


@login_required
@require_GET
def compare(request: HttpRequest, slug: str) -> HttpResponse:
    """Two to four candidates of one article side by side (``?c=ID&c=ID``)."""
    return _compare(request, get_object_or_404(Article, slug=slug))


@login_required
@require_GET
def inbox_compare(request: HttpRequest) -> HttpResponse:
    """Two to four Inbox candidates side by side (``?c=ID&c=ID``)."""
    return _compare(request, None)


def _regenerate(request: HttpRequest, run: GenerationRun, candidate: Candidate | None) -> HttpResponse:
    form = RegenerateForm(request.POST or None, run=run, candidate=candidate)
    if request.method == "POST" and form.is_valid():
        values: dict[str, Any] = dict(form.cleaned_data)
        try:
            new_run = run_regenerate(
                source=run,
                candidate=candidate,
                requested_by=request.user,
                requested_via=RequestedVia.DASHBOARD,
                **values,
            )
        except ValidationError as exc:
            _show_errors(form, exc)
        else:
            messages.success(request, f"Run {new_run.pk} queued: {new_run.regenerate_label}.")
            return HttpResponseRedirect(f"{_home_url(new_run)}#run-{new_run.pk}")
    context = {"form": form, "run": run, "candidate": candidate, "article": run.article}
    return render(request, "gallery/regenerate.html", context, status=400 if form.errors else 200)


@editor_required
@require_http_methods(["GET", "POST"])
def run_regenerate_view(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(GenerationRun.objects.select_related("article", "preset"), pk=pk)
    return _regenerate(request, run, None)


@editor_required
@require_http_methods(["GET", "POST"])
def candidate_regenerate_view(request: HttpRequest, pk: int) -> HttpResponse:
    candidate = _candidate(pk)
    return _regenerate(request, candidate.run, candidate)


@editor_required
@require_http_methods(["GET", "POST"])
def candidate_publish(request: HttpRequest, pk: int) -> HttpResponse:
    """Alt text (prefilled with a suggestion) and a focal point, then publish on the light queue."""
    candidate = _candidate(pk)
    if candidate.run.article is None:
        messages.warning(request, NOT_FILED)
        return HttpResponseRedirect(f"{reverse('gallery:candidate_detail', args=[pk])}#file")
    suggestion = alt_text_suggest(candidate=candidate) if request.method == "GET" else None
    form = PublishForm(request.POST or None, initial={"alt_text": suggestion.text if suggestion else ""})
    if request.method == "POST" and form.is_valid():
        focal = (form.cleaned_data["focal_x"], form.cleaned_data["focal_y"])
        try:
            publication_request(
                candidate=candidate, by=request.user, alt_text=form.cleaned_data["alt_text"], focal=focal
            )
        except ValidationError as exc:
            _show_errors(form, exc)
        except PublishConflict as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Publishing: the renditions are being made and uploaded.")
            return HttpResponseRedirect(f"{candidate.run.article.get_absolute_url()}#publication")
    context = {
        "form": form,
        "candidate": candidate,
        "run": candidate.run,
        "article": candidate.run.article,
        "hero_size": "{}x{}".format(*settings.HOFFDESK_HERO_SIZE),
        "alt_suggestion": suggestion,
        **_hero_size_offer(candidate),
    }
    return render(request, "gallery/publish.html", context, status=400 if form.errors else 200)


def _hero_size_offer(candidate: Candidate) -> dict[str, object]:
    """For a candidate too small for the hero: why, and whether Make hero size can fix it."""
    shortfall = hero_shortfall(candidate)
    return {"shortfall": shortfall, "can_enlarge": bool(shortfall) and can_make_hero_size(candidate)}


def _takedown_facts() -> dict[str, object]:
    """What the publication card says about deleting files: how long copies live, and the purge."""
    return {
        "cache_control": settings.PUBLISH_CACHE_CONTROL,
        "purge_configured": cdn_purge_configured(),
    }


def _publication_card(request: HttpRequest, publication: Publication) -> HttpResponse:
    context = {"publication": publication, **_takedown_facts()}
    return render(request, "gallery/article_detail.html#publication-card", context)


@login_required_401
@require_GET
def publication_card(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Polled while publishing; when it ends, the page reloads once so the hero badge, the
    candidate's state and the URLs all show the outcome together."""
    publication = get_object_or_404(Publication.objects.select_related("candidate"), pk=pk)
    if request.htmx and publication.is_finished:
        return HttpResponseClientRefresh()
    return _publication_card(request, publication)


@editor_required
@require_POST
def publication_retry_view(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    publication = get_object_or_404(Publication.objects.select_related("candidate"), pk=pk)
    try:
        publication_retry(publication=publication)
    except PublishConflict as exc:
        messages.warning(request, str(exc))
        if request.htmx:
            return HttpResponseClientRefresh()
        return HttpResponseRedirect(f"{publication.article.get_absolute_url()}#publication")
    if request.htmx:
        return _publication_card(request, publication)
    return HttpResponseRedirect(f"{publication.article.get_absolute_url()}#publication")


@editor_required
@require_POST
def publication_unpublish_view(request: HttpRequest, pk: int) -> HttpResponse:
    publication = get_object_or_404(Publication, pk=pk)
    if publication_unpublish(
        publication=publication, by=request.user, delete_objects=request.POST.get("delete") == "1"
    ):
        messages.success(request, "Unpublished: the article has no published hero now.")
    else:
        messages.warning(request, "Nothing to unpublish: that publication is not live.")
    return HttpResponseRedirect(f"{publication.article.get_absolute_url()}#publication")


@editor_required
@require_POST
def publication_purge_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Purge again, after Cloudflare refused or could not be reached."""
    publication = get_object_or_404(Publication, pk=pk)
    if publication_purge_again(publication=publication):
        messages.success(request, "Asked Cloudflare again to purge the deleted files.")
    else:
        messages.warning(request, "Nothing to purge: no failed purge, or Cloudflare is not configured.")
    return HttpResponseRedirect(f"{publication.article.get_absolute_url()}#publication")
