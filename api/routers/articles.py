"""Articles: create or update by slug, read with the hero, and the Magic Wand."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Router, Status

from api.errors import ApiError, from_validation_error
from api.routers.common import article_json, errors, get_or_404, run_json
from api.schemas import ArticleIn, ArticleOut, RunIn, RunOut
from gallery.models import Article
from gallery.services import ImportInvalid, articles_import
from gallery.wand import article_wand
from generation.models import RequestedVia
from generation.services import QueueLimitReached

router = Router(tags=["articles"])


@router.post("/articles", response={200: ArticleOut, 201: ArticleOut, **errors(400)}, url_name="article_upsert")
def article_upsert(request: HttpRequest, payload: ArticleIn) -> Status[dict[str, Any]]:
    """Create the article (201) or update the one with this slug (200); omitted fields keep their values."""
    record = payload.model_dump(exclude_none=True)
    try:
        report = articles_import(records=[record])
    except ImportInvalid as exc:
        by_field: dict[str, list[str]] = {}
        for _, field, message in exc.problems:
            by_field.setdefault(field, []).append(message)
        raise ApiError.from_messages(400, by_field) from None
    article = Article.objects.get(slug=record["slug"].strip())
    return Status(201 if report.created else 200, article_json(request, article))


@router.get("/articles/{slug}", response={200: ArticleOut, **errors(404)}, url_name="article_detail")
def article_detail(request: HttpRequest, slug: str) -> dict[str, Any]:
    article = get_or_404(Article.objects.all(), "slug", slug, "article")
    return article_json(request, article)


@router.post("/articles/{slug}/runs", response={202: RunOut, **errors(400, 404, 429)}, url_name="run_create")
def run_create(request: HttpRequest, slug: str, payload: RunIn) -> Status[dict[str, Any]]:
    """Queue a run; without a prompt it is the Magic Wand (the article's preset, series look, prompt)."""
    article = get_or_404(Article.objects.all(), "slug", slug, "article")
    try:
        run = article_wand(
            article=article,
            requested_by=request.user,
            requested_via=RequestedVia.API,
            api_token=getattr(request, "auth", None),
            **payload.model_dump(exclude_none=True),  # left out: the Magic Wand's (the preset's) values
        )
    except QueueLimitReached as exc:
        raise from_validation_error(exc, status=429) from None
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    return Status(202, run_json(request, run))
