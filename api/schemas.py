"""What the API reads and writes. Inputs refuse unknown fields, so a typo is an error that
names the field instead of a setting silently ignored."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ninja import Field, Schema
from pydantic import ConfigDict, StrictBool, StrictFloat, StrictInt

from gallery.publishing import MAX_ALT_TEXT
from gallery.services import MAX_REVIEW_REASON_LENGTH
from generation.validation import (
    MAX_HIRES_SCALE,
    MAX_IMAGES,
    MAX_NAME_LENGTH,
    MAX_NEGATIVE_PROMPT_LENGTH,
    MAX_PROMPT_LENGTH,
    MIN_HIRES_SCALE,
)


class Error(Schema):
    """Every error: ``detail`` starts with the field it is about; ``errors`` has them all by field."""

    detail: str = Field(..., examples=["slug: Enter a valid “slug” consisting of letters, numbers…"])
    errors: dict[str, list[str]] = Field(..., description="Messages by field; `request` when no single field.")


class Input(Schema):
    model_config = ConfigDict(extra="forbid")


# --- articles -------------------------------------------------------------------------------


class ArticleIn(Input):
    slug: str = Field(
        ...,
        max_length=200,
        pattern=r"^[-a-zA-Z0-9_]+$",
        description="Identifies the article; an existing slug is updated.",
    )
    title: str = Field(..., min_length=1, max_length=300)
    summary: str | None = None
    content_type: Literal["technical", "tutorial", "personal", "quick_tip"] | None = Field(
        None, description="Defaults to technical for a new article."
    )
    tone: str | None = Field(None, max_length=100)
    series: str | None = Field(None, max_length=200, description="The series' name; articles of a series share a look.")


class HeroOut(Schema):
    candidate: int
    urls: dict[str, str] = Field(..., description="Absolute public URL of each rendition, by name.")


class ArticleOut(Schema):
    slug: str
    title: str
    summary: str
    content_type: str
    tone: str
    series: str
    hero: HeroOut | None
    created_at: datetime
    updated_at: datetime


# --- runs ------------------------------------------------------------------------------------


class HiresIn(Input):
    """The hires pass: the first pass at ``width`` x ``height``, enlarged, then image-to-image.
    Ranges are the service's (one table of limits), so they are described, not repeated."""

    hires_scale: StrictFloat | None = Field(
        None,
        description=(
            f"Enlarge by this, {MIN_HIRES_SCALE:g} to {MAX_HIRES_SCALE:g}, then a second pass; 0 turns a preset's "
            "hires pass off; left out: the preset's."
        ),
    )
    hires_upscaler: str | None = Field(
        None,
        max_length=MAX_NAME_LENGTH,
        description="`lanczos` (default) or an upscaler file a GPU worker has (file stem).",
    )
    hires_steps: StrictInt | None = Field(None, description="Steps of the second pass (default: the preset's).")
    hires_denoise: StrictFloat | None = Field(
        None, description="Denoising strength of the second pass, above 0 and at most 1 (default 0.5 or the preset's)."
    )


class RunIn(HiresIn):
    """Every field is optional: an empty object is the Magic Wand."""

    prompt: str | None = Field(
        None, max_length=MAX_PROMPT_LENGTH, description="Blank: the Magic Wand writes one from the article."
    )
    negative_prompt: str | None = Field(None, max_length=MAX_NEGATIVE_PROMPT_LENGTH)
    preset: str | None = Field(None, max_length=MAX_NAME_LENGTH, description="A style preset's slug.")
    style: str | None = Field(
        None, max_length=MAX_NAME_LENGTH, description="An image style's slug (`auto`: the article's content type)."
    )
    model: str | None = Field(
        None, max_length=MAX_NAME_LENGTH, description="A model profile, e.g. flux-dev-nf4 or tiny-sd."
    )
    seed: StrictInt | None = None
    count: StrictInt | None = Field(None, description=f"Candidates, 1 to {MAX_IMAGES} (default 4).")
    width: StrictInt | None = None
    height: StrictInt | None = None
    steps: StrictInt | None = None
    guidance: StrictFloat | None = None
    draft: StrictBool | None = Field(
        None,
        description=(
            "A fast draft: half the steps (at least 4) unless `steps` is given, and a cache on the transformer "
            "(FLUX); regenerate it with mode `final` for the keeper. Left out: the preset's `drafts_by_default`."
        ),
    )


# The API's names of RegenerateMode (api.routers.runs.MODES maps them; a test holds the two equal).
REGENERATE_MODES = Literal["new_seeds", "same_seed", "exact", "seed", "variations", "upscale", "final"]


class RegenerateIn(HiresIn):
    mode: REGENERATE_MODES = Field(
        ...,
        description=(
            "new_seeds: the recipe with new seeds; same_seed: a candidate's seed with changed settings; "
            "exact: the same recipe and seeds; seed: the seed given; variations: a candidate's seed blended "
            "with new seeds at `strength`; upscale (Make hero size): the candidate's own image through the "
            "hires pass on its model and seed, to at least the hero's size (only `candidate` and `hires_*` "
            "may be given); final (Final render, a draft's candidate only): its seed and the draft's prompt at "
            "full quality, no cache, one candidate (only `candidate` may be given)."
        ),
    )
    candidate: StrictInt | None = Field(
        None, description="A candidate of this run (same_seed, variations, upscale and final)."
    )
    seed: StrictInt | None = Field(None, description="For mode seed.")
    strength: StrictFloat | None = Field(None, description="For mode variations, 0.05 to 0.5.")
    prompt: str | None = Field(None, max_length=MAX_PROMPT_LENGTH)
    negative_prompt: str | None = Field(None, max_length=MAX_NEGATIVE_PROMPT_LENGTH)
    preset: str | None = Field(None, max_length=MAX_NAME_LENGTH, description="A style preset's slug.")
    model: str | None = Field(None, max_length=MAX_NAME_LENGTH)
    count: StrictInt | None = Field(None, description=f"Candidates, 1 to {MAX_IMAGES}.")
    steps: StrictInt | None = None
    guidance: StrictFloat | None = None


class Progress(Schema):
    step: int
    total: int


class RunCandidateOut(Schema):
    id: int
    seed: int
    status: str = Field(..., description="Review state: pending, approved, rejected, published, unpublished.")
    image_url: str = Field(..., description="The PNG, for the same bearer token.")
    width: int
    height: int
    sha256: str


class RunOut(Schema):
    id: int
    article: str | None = Field(..., description="The article's slug; null for an image-API run in the Inbox.")
    status: str = Field(..., description="queued, running, succeeded, failed or cancelled.")
    progress: Progress
    error: str
    prompt: str
    negative_prompt: str
    model: str = Field(..., description="The model profile asked for.")
    engine_profile: str = Field(
        ...,
        description=(
            "The profile that runs: when queued, what the GPU workers' reports say will run; once a worker "
            "claims the run, what that worker decided from its own models folder (a tiny stand-in when it has "
            "no weights for `model`)."
        ),
    )
    stand_in: bool
    engine_note: str = Field(
        "", description="Why a stand-in runs, e.g. `no GPU worker has flux-dev-nf4 weights: ...`; blank otherwise."
    )
    seed: int = Field(..., description="The base seed; candidate i has seed + i (variations: all the same).")
    count: int
    width: int
    height: int
    steps: int
    guidance: float
    hires_scale: float | None = Field(..., description="The hires pass's enlargement; null: no hires pass.")
    hires_upscaler: str = Field(..., description="`lanczos` or an upscaler file's name; blank without a hires pass.")
    hires_steps: int | None
    hires_denoise: float | None
    output_width: int = Field(..., description="The candidates' size: the hires pass's, else width x height.")
    output_height: int
    parent: int | None
    mode: str = Field(..., description="How a regeneration was made from its parent (blank for a new run).")
    source_candidate: int | None = Field(
        ..., description="Mode upscale: the candidate whose image is enlarged; mode final: the draft's keeper."
    )
    draft: bool = Field(..., description="A fast draft (fewer steps, maybe a cache); `final` renders a keeper.")
    draft_cache: dict[str, Any] = Field(
        ..., description='The cache and its settings, e.g. {"kind": "FirstBlockCache", "threshold": 0.08}; {}: none.'
    )
    prompt_warning: str
    prompt_note: str
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    candidates: list[RunCandidateOut]


# --- candidates ------------------------------------------------------------------------------


class ReviewIn(Input):
    reason: str | None = Field(
        None, max_length=MAX_REVIEW_REASON_LENGTH, description="Why (kept in the decision history)."
    )


class FocalPoint(Schema):
    model_config = ConfigDict(extra="forbid")

    x: StrictFloat = Field(..., description="0 (left) to 1 (right).")
    y: StrictFloat = Field(..., description="0 (top) to 1 (bottom).")


class PublishIn(Input):
    alt_text: str = Field(
        ..., max_length=MAX_ALT_TEXT, description="Required: describes the image for readers (at most 500 characters)."
    )
    focal_point: FocalPoint | None = Field(None, description="Kept inside every crop; default the centre.")


class PublicationOut(Schema):
    status: str = Field(..., description="publishing, published, failed (or unpublished, replaced, cancelled).")
    urls: dict[str, str]
    error: str


class CandidateOut(Schema):
    id: int
    run: int
    article: str | None = Field(..., description="The article's slug; null while its run is in the Inbox.")
    seed: int
    status: str = Field(..., description="Review state: pending, approved, rejected, published, unpublished.")
    image_url: str
    width: int
    height: int
    sha256: str
    alt_text: str
    publication: PublicationOut | None
