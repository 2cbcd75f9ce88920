"""Candidates: read with their publication, the PNG itself, review and publish."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import FileResponse, HttpRequest
from ninja import Router, Status

from api.errors import ApiError, from_validation_error
from api.routers.common import candidate_json, errors, get_or_404
from api.schemas import CandidateOut, PublishIn, ReviewIn
from gallery.publishing import PublishConflict, publication_request
from gallery.services import ReviewConflict, candidate_review
from generation.models import Candidate

router = Router(tags=["candidates"])

PNG_RESPONSE = {
    "responses": {
        "200": {
            "description": "The candidate's PNG, with its recipe in a text chunk.",
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        }
    }
}


def _candidate(pk: int) -> Candidate:
    return get_or_404(Candidate.objects.select_related("run__article"), "id", pk, "candidate")


@router.get("/candidates/{int:pk}", response={200: CandidateOut, **errors(404)}, url_name="candidate_detail")
def candidate_detail(request: HttpRequest, pk: int) -> dict[str, Any]:
    return candidate_json(request, _candidate(pk))


@router.get("/candidates/{int:pk}/image", response=errors(404), openapi_extra=PNG_RESPONSE, url_name="candidate_image")
def candidate_image(request: HttpRequest, pk: int) -> FileResponse:
    candidate = _candidate(pk)
    response = FileResponse(candidate.image.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=86400"
    return response


def _review(request: HttpRequest, pk: int, action: str, payload: ReviewIn | None) -> dict[str, Any]:
    candidate = _candidate(pk)
    reason = (payload.reason if payload else None) or ""
    try:
        candidate_review(candidate=candidate, action=action, by=request.user, reason=reason)
    except ReviewConflict as exc:
        raise ApiError.field(409, "status", str(exc)) from None
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    return candidate_json(request, candidate)


@router.post(
    "/candidates/{int:pk}/approve", response={200: CandidateOut, **errors(400, 404, 409)}, url_name="candidate_approve"
)
def candidate_approve(request: HttpRequest, pk: int, payload: ReviewIn | None = None) -> dict[str, Any]:
    return _review(request, pk, "approve", payload)


@router.post(
    "/candidates/{int:pk}/reject", response={200: CandidateOut, **errors(400, 404, 409)}, url_name="candidate_reject"
)
def candidate_reject(request: HttpRequest, pk: int, payload: ReviewIn | None = None) -> dict[str, Any]:
    """Reject, with an optional reason kept in the history."""
    return _review(request, pk, "reject", payload)


@router.post(
    "/candidates/{int:pk}/publish", response={202: CandidateOut, **errors(400, 404, 409)}, url_name="candidate_publish"
)
def candidate_publish(request: HttpRequest, pk: int, payload: PublishIn) -> Status[dict[str, Any]]:
    """Publish an approved candidate as its article's hero; poll the candidate until the
    publication is published (the article's hero then) or failed."""
    candidate = _candidate(pk)
    if candidate.review_status not in (Candidate.Review.APPROVED, Candidate.Review.PUBLISHED):
        raise ApiError.field(409, "status", f"candidate {pk} is {candidate.review_status}; approve it first.")
    focal = (payload.focal_point.x, payload.focal_point.y) if payload.focal_point else (0.5, 0.5)
    try:
        publication_request(candidate=candidate, by=request.user, alt_text=payload.alt_text, focal=focal)
    except PublishConflict as exc:
        raise ApiError.field(409, "article", str(exc)) from None
    except ValidationError as exc:
        problem = from_validation_error(exc, rename={"focal": "focal_point"})
        if set(problem.errors) == {"candidate"}:  # too small for the hero: the image, not the request
            problem.status = 409
        raise problem from None
    return Status(202, candidate_json(request, candidate))
