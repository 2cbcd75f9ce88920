"""Articles from the dashboard: New article, Edit, and a JSON import from the browser.

A newcomer meets an empty list; these pages let them start without a terminal or the admin.
The import calls the same ``articles_import`` as ``manage.py import_articles``: the same
validation, and all or nothing.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_http_methods

from gallery.access import editor_required, login_required_401
from gallery.forms import ArticleForm, ArticleImportForm
from gallery.models import Article
from gallery.services import ImportInvalid, articles_import
from generation.models import Candidate

MAX_IMPORT_BYTES = 5 * 1024 * 1024  # thousands of articles; more is a mistake or a wrong file


def _article_form(request: HttpRequest, article: Article | None) -> HttpResponse:
    form = ArticleForm(request.POST or None, instance=article)
    if request.method == "POST":
        if form.is_valid():
            saved = form.save()
            messages.success(request, f"“{saved.title}” {'saved' if article else 'added'}: press the Magic Wand.")
            return redirect(saved)
        return render(request, "gallery/article_form.html", {"form": form, "article": article}, status=400)
    return render(request, "gallery/article_form.html", {"form": form, "article": article})


@editor_required
@require_http_methods(["GET", "POST"])
def article_new(request: HttpRequest) -> HttpResponse:
    return _article_form(request, None)


@editor_required
@require_http_methods(["GET", "POST"])
def article_edit(request: HttpRequest, slug: str) -> HttpResponse:
    return _article_form(request, get_object_or_404(Article, slug=slug))


def _records(form: ArticleImportForm) -> Any:
    """The uploaded file's JSON; ``ValueError`` says what is wrong with the file."""
    upload = form.cleaned_data["file"]
    if upload.size > MAX_IMPORT_BYTES:
        raise ValueError(f"{upload.name} is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB.")
    try:
        return json.loads(upload.read().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{upload.name} is not UTF-8 text (byte {exc.start}): save it as UTF-8 JSON.") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{upload.name} is not valid JSON: {exc}") from None


def _problem_lines(records: Any, exc: ImportInvalid) -> list[str]:
    """Each problem naming its record (index and slug, when it has one) and field."""
    lines = []
    for index, field, message in exc.problems:
        record = records[index] if isinstance(records, list) and 0 <= index < len(records) else None
        slug = record.get("slug") if isinstance(record, dict) else None
        where = "file" if index < 0 else f"record {index}" + (f" ({slug})" if isinstance(slug, str) and slug else "")
        lines.append(f"{where}: {field}: {message}")
    return lines


@editor_required
@require_http_methods(["GET", "POST"])
def articles_import_view(request: HttpRequest) -> HttpResponse:
    """Import articles from an uploaded JSON file, all or nothing."""
    form = ArticleImportForm(request.POST or None, request.FILES or None)
    problems: list[str] = []
    if request.method == "POST" and form.is_valid():
        try:
            records = _records(form)
            report = articles_import(records=records)
        except ValueError as exc:
            problems = [f"file: {exc}"]
        except ImportInvalid as exc:
            problems = _problem_lines(records, exc)
        else:
            created, updated, unchanged = len(report.created), len(report.updated), len(report.unchanged)
            messages.success(request, f"Imported: {created} created, {updated} updated, {unchanged} unchanged.")
            return redirect("gallery:article_list")
    status = 400 if request.method == "POST" else 200
    return render(request, "gallery/article_import.html", {"form": form, "problems": problems}, status=status)


MAX_POLLED_ROWS = 100  # a list page shows 25


def _counts(slugs: list[str]) -> dict[str, dict[str, int]]:
    """Per article slug: its candidates by review state, in one query."""
    rows = (
        Candidate.objects.filter(run__article__slug__in=slugs)
        .values_list("run__article__slug", "review_status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts: dict[str, dict[str, int]] = {slug: {} for slug in slugs}
    for slug, status, n in rows:
        counts[slug][status] = n
    return counts


@login_required_401
@require_GET
def article_list_counts(request: HttpRequest) -> HttpResponse:
    """The list rows' waiting and approved pills, out of band: the list polls this so its
    counts follow candidates that arrive and decisions made elsewhere, without a reload."""
    slugs = request.GET.getlist("s")
    if len(slugs) > MAX_POLLED_ROWS:
        return HttpResponse(f"s: at most {MAX_POLLED_ROWS} slugs.", status=400, content_type="text/plain")
    parts = []
    for slug, by_status in _counts(slugs).items():
        waiting, approved = by_status.get("pending", 0), by_status.get("approved", 0)
        row = {"slug": slug, "waiting_count": waiting, "approved_count": approved}
        for partial in ("waiting-count", "approved-count"):
            parts.append(render_to_string(f"gallery/article_list.html#{partial}", {"article": row, "oob": True}))
    return HttpResponse("".join(parts))


@login_required_401
@require_GET
def article_counts(request: HttpRequest, slug: str) -> HttpResponse:
    """The article page's header counts; the header polls it and reloads after a decision."""
    article = get_object_or_404(Article, slug=slug)
    return render(request, "gallery/_article_counts.html", {"article": article})
