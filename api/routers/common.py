"""Shared by the routers: looking rows up (404 naming the id), absolute URLs, error responses,
and the model -> JSON shapes (one function per shape, so two endpoints cannot drift)."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.urls import reverse

from api.errors import ApiError
from api.schemas import Error
from gallery.models import Article, Publication
from generation.models import Candidate, GenerationRun

M = TypeVar("M", bound=Model)

MAX_ID = 2**63 - 1
API_NAMESPACE = "api:api-v1"


def errors(*statuses: int) -> dict[int, type[Error]]:
    """The error responses an operation declares (401 and 403 always: every call needs a token)."""
    return {status: Error for status in sorted({401, 403, *statuses})}


def get_or_404(queryset: QuerySet[M], field: str, value: Any, what: str) -> M:
    if isinstance(value, int) and not 0 < value <= MAX_ID:
        raise ApiError.field(404, field, f"no {what} with {field} {value}.")
    row = queryset.filter(**{field if field != "id" else "pk": value}).first()
    if row is None:
        raise ApiError.field(404, field, f"no {what} with {field} {value!r}.")
    return row


def absolute(request: HttpRequest, url: str) -> str:
    """A storage URL (``/published/...`` locally, ``https://cdn...`` on R2) as an absolute URL."""
    return request.build_absolute_uri(url)


def image_url(request: HttpRequest, candidate_id: int) -> str:
    return absolute(request, reverse(f"{API_NAMESPACE}:candidate_image", args=[candidate_id]))


def article_json(request: HttpRequest, article: Article) -> dict[str, Any]:
    hero = None
    if article.hero_candidate_id is not None:
        live = Publication.objects.filter(
            article=article, candidate_id=article.hero_candidate_id, status=Publication.Status.PUBLISHED
        ).first()
        urls = live.urls if live else {}
        hero = {"candidate": article.hero_candidate_id, "urls": {k: absolute(request, v) for k, v in urls.items()}}
    return {
        "slug": article.slug,
        "title": article.title,
        "summary": article.summary,
        "content_type": article.content_type,
        "tone": article.tone,
        "series": article.series,
        "hero": hero,
        "created_at": article.created_at,
        "updated_at": article.updated_at,
    }


def run_json(request: HttpRequest, run: GenerationRun) -> dict[str, Any]:
    candidates = [
        {
            "id": c.pk,
            "seed": c.seed,
            "status": c.review_status,
            "image_url": image_url(request, c.pk),
            "width": c.width,
            "height": c.height,
            "sha256": c.sha256,
        }
        for c in run.candidates.order_by("index")
    ]
    output_width, output_height = run.output_size
    return {
        "id": run.pk,
        "article": run.article.slug if run.article else None,  # None: an image-API run in the Inbox
        "status": run.status,
        "progress": {"step": run.progress_step, "total": run.progress_total},
        "error": run.error,
        "prompt": run.prompt,
        "negative_prompt": run.negative_prompt,
        "model": run.model_profile,
        "engine_profile": run.engine_profile,
        "stand_in": run.is_stand_in,
        "engine_note": run.engine_note,
        "seed": run.base_seed,
        "count": run.count,
        "width": run.width,
        "height": run.height,
        "steps": run.steps,
        "guidance": run.guidance,
        "hires_scale": run.hires_scale,
        "hires_upscaler": run.hires_upscaler,
        "hires_steps": run.hires_steps,
        "hires_denoise": run.hires_denoise,
        "output_width": output_width,
        "output_height": output_height,
        "parent": run.parent_id,
        "mode": run.regenerate_mode,
        "source_candidate": run.source_candidate_id,
        "draft": run.draft,
        "draft_cache": run.draft_cache or {},
        "prompt_warning": run.prompt_warning,
        "prompt_note": run.prompt_note,
        "queued_at": run.queued_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "candidates": candidates,
    }


def candidate_json(request: HttpRequest, candidate: Candidate) -> dict[str, Any]:
    publication = candidate.publications.order_by("-requested_at", "-id").first()
    published = None
    if publication is not None:
        published = {
            "status": publication.status,
            "urls": {k: absolute(request, v) for k, v in publication.urls.items()},
            "error": publication.error,
        }
    return {
        "id": candidate.pk,
        "run": candidate.run_id,
        "article": candidate.run.article.slug if candidate.run.article else None,
        "seed": candidate.seed,
        "status": candidate.review_status,
        "image_url": image_url(request, candidate.pk),
        "width": candidate.width,
        "height": candidate.height,
        "sha256": candidate.sha256,
        "alt_text": candidate.alt_text or (publication.alt_text if publication else ""),
        "publication": published,
    }
