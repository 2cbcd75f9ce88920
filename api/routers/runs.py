"""Runs: progress and candidates, cancel, regenerate."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Router, Status

from api.errors import ApiError, from_validation_error
from api.routers.common import errors, get_or_404, run_json
from api.schemas import RegenerateIn, RunOut
from generation.models import Candidate, GenerationRun, RegenerateMode, RequestedVia, StylePreset
from generation.services import QueueLimitReached, run_cancel, run_regenerate

router = Router(tags=["runs"])

MODES = {
    "new_seeds": RegenerateMode.MORE,
    "same_seed": RegenerateMode.COMPOSE,
    "exact": RegenerateMode.EXACT,
    "seed": RegenerateMode.SEED,
    "variations": RegenerateMode.VARIATIONS,
    "upscale": RegenerateMode.UPSCALE,
    "final": RegenerateMode.FINAL,
}
NEEDS_CANDIDATE = ("same_seed", "variations", "upscale", "final")
# Make hero size keeps the candidate's composition: its run's recipe, seed and one candidate.
UPSCALE_FIELDS = {"mode", "candidate", "hires_scale", "hires_upscaler", "hires_steps", "hires_denoise"}
# Final render keeps the draft's recipe and the candidate's seed: nothing else to choose.
FINAL_FIELDS = {"mode", "candidate"}


def _run(pk: int) -> GenerationRun:
    return get_or_404(GenerationRun.objects.select_related("article"), "id", pk, "run")


@router.get("/runs/{int:pk}", response={200: RunOut, **errors(404)}, url_name="run_detail")
def run_detail(request: HttpRequest, pk: int) -> dict[str, Any]:
    return run_json(request, _run(pk))


@router.post("/runs/{int:pk}/cancel", response={200: RunOut, **errors(404, 409)}, url_name="run_cancel")
def run_cancel_view(request: HttpRequest, pk: int) -> dict[str, Any]:
    """A queued run ends at once; a running one stops at its next step (poll until cancelled)."""
    run = _run(pk)
    if not run_cancel(run=run):
        raise ApiError.field(409, "status", f"run {run.pk} already finished ({run.status}); nothing to cancel.")
    return run_json(request, run)


def _candidate_of(run: GenerationRun, payload: RegenerateIn) -> Candidate | None:
    if payload.candidate is None:
        if payload.mode in NEEDS_CANDIDATE:
            raise ApiError.field(400, "candidate", f"mode {payload.mode} needs a candidate of run {run.pk}.")
        return None
    candidate = run.candidates.filter(pk=payload.candidate).first() if 0 < payload.candidate < 2**63 else None
    if candidate is None:
        raise ApiError.field(400, "candidate", f"run {run.pk} has no candidate {payload.candidate}.")
    return candidate


def _refuse_recipe_fields(payload: RegenerateIn) -> None:
    """Modes upscale and final would ignore a recipe field (the service keeps the source's): say so instead."""
    allowed = FINAL_FIELDS if payload.mode == "final" else UPSCALE_FIELDS
    given = sorted(payload.model_dump(exclude_none=True).keys() - allowed)
    if given:
        raise ApiError.from_messages(
            400,
            {field: [_KEPT[payload.mode]] for field in given},
        )


_KEPT = {
    "upscale": "mode upscale enlarges the candidate as it is; only candidate and hires_* may be given.",
    "final": "mode final renders the draft's candidate with its recipe at full quality; only candidate may be given.",
}


def _preset(slug: str | None) -> StylePreset | None:
    if not slug:
        return None
    preset = StylePreset.objects.filter(slug=slug).first()
    if preset is None:
        raise ApiError.field(400, "preset", f"no style preset with slug {slug!r}.")
    return preset


@router.post("/runs/{int:pk}/regenerate", response={202: RunOut, **errors(400, 404, 429)}, url_name="run_regenerate")
def run_regenerate_view(request: HttpRequest, pk: int, payload: RegenerateIn) -> Status[dict[str, Any]]:
    """A new run from this one (its ``parent``); recipe fields left out keep this run's values."""
    run = _run(pk)
    candidate = _candidate_of(run, payload)
    if payload.mode in ("upscale", "final"):
        _refuse_recipe_fields(payload)
    values = payload.model_dump(exclude={"mode", "candidate", "strength", "preset"})
    try:
        new_run = run_regenerate(
            source=run,
            mode=MODES[payload.mode],
            candidate=candidate,
            requested_by=request.user,
            requested_via=RequestedVia.API,
            api_token=getattr(request, "auth", None),
            preset=_preset(payload.preset),
            variation_strength=payload.strength,
            **values,
        )
    except QueueLimitReached as exc:
        raise from_validation_error(exc, status=429) from None
    except ValidationError as exc:
        raise from_validation_error(exc, rename={"variation_strength": "strength"}) from None
    return Status(202, run_json(request, new_run))
