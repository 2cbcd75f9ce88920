"""Writes that span models or the queue: submitting, regenerating, queueing and cancelling runs,
and deleting the files no row points at. Requests are checked first by ``generation.validation``;
recovering runs left by a dead worker is ``generation.recovery``, which uses this module (never
the other way round).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.utils import timezone

from generation.models import (
    Candidate,
    GenerationRun,
    PromptTemplate,
    RegenerateMode,
    StylePreset,
    candidate_file_name,
    candidate_storage,
)
from generation.profiles import suggested_generation_size
from generation.prompts import prompt_render, prompt_values
from generation.validation import (
    CANDIDATE_ONLY_MODES,
    MAX_HIRES_SCALE,
    MAX_VARIATION_STRENGTH,
    MIN_VARIATION_STRENGTH,
    hero_scale,
    run_validate,
)

logger = logging.getLogger(__name__)

DEFAULT_PROMPT_TEMPLATE = "hero"
FALLBACK_PROMPT = "{title}. {summary} {style}"


def prompt_template_current(name: str = DEFAULT_PROMPT_TEMPLATE) -> PromptTemplate | None:
    """The newest version of the template called ``name``."""
    return PromptTemplate.objects.filter(name=name).order_by("-version").first()


def prompt_for_article(*, article: Any, preset: StylePreset | None = None) -> tuple[str, PromptTemplate | None]:
    """The default prompt: the newest ``hero`` template filled in from the article and preset."""
    template = prompt_template_current()
    values = prompt_values(article=article, preset=preset)
    return prompt_render(template.text if template else FALLBACK_PROMPT, values), template


def preset_for_article(*, article: Any) -> StylePreset | None:
    """The content-type preset that serves this article's content type, if any."""
    for preset in StylePreset.objects.filter(image_style=False):
        if article.content_type in (preset.content_types or []):
            return preset
    return None


def run_submit(
    *,
    article: Any,
    prompt: str | None = None,
    model: str | None = None,
    negative_prompt: str | None = None,
    width: Any = None,
    height: Any = None,
    steps: Any = None,
    guidance: Any = None,
    seed: Any = None,
    count: Any = None,
    preset: StylePreset | None = None,
    requested_by: Any = None,
    parent: GenerationRun | None = None,
    variation_strength: Any = None,
    variation_seed: Any = None,
    regenerate_mode: str = "",
    prompt_source: str = "",
    prompt_template: PromptTemplate | None = None,
    prompt_note: str = "",
    requested_via: str = "",
    api_token: Any = None,
    client_fields: dict[str, Any] | None = None,
    hires_scale: Any = None,
    hires_upscaler: Any = None,
    hires_steps: Any = None,
    hires_denoise: Any = None,
    source_candidate: Candidate | None = None,
    comfy_workflow: Any = None,
    draft: Any = False,
    draft_cache: dict[str, Any] | None = None,
) -> GenerationRun:
    """Validate, create the run and queue it once the transaction commits.

    Without a prompt, the newest ``hero`` template is filled in from the article and preset.
    ``prompt_source``, ``prompt_template`` and ``prompt_note`` record where a given prompt came
    from (the Magic Wand passes them). ``draft``: a fast first look (``generation.drafts``).
    """
    preset = preset or (preset_for_article(article=article) if article is not None else None)
    template = prompt_template
    if not prompt and article is None:
        raise ValidationError(
            {"prompt": "prompt must not be empty (a run without an article has nothing to build one from)."}
        )
    if not prompt:
        prompt, template = prompt_for_article(article=article, preset=preset)
        prompt_source = "template"
    elif not prompt_source:
        prompt_source = "typed"
    if negative_prompt is None:
        negative_prompt = preset.negative_prompt if preset else ""
    # A Final render names its source candidate too, but makes a whole new image.
    enlarge_only = source_candidate is not None and regenerate_mode != RegenerateMode.FINAL
    params = run_validate(
        model=model,
        prompt=prompt,
        negative_prompt=negative_prompt,
        width=width,
        height=height,
        steps=steps,
        guidance=guidance,
        seed=seed,
        count=count,
        preset=preset,
        variation_strength=variation_strength,
        variation_seed=variation_seed,
        hires_scale=hires_scale,
        hires_upscaler=hires_upscaler,
        hires_steps=hires_steps,
        hires_denoise=hires_denoise,
        enlarge_only=enlarge_only,
        comfy_workflow=comfy_workflow,
        draft=draft,
        draft_cache=draft_cache,
    )
    first_pass = 0 if enlarge_only else params.steps
    user = requested_by if getattr(requested_by, "is_authenticated", False) else None
    with transaction.atomic():
        if user is not None:
            _check_queue_limit(user)
        run = GenerationRun.objects.create(
            article=article,
            preset=preset,
            prompt_template=template,
            parent=parent,
            regenerate_mode=regenerate_mode,
            prompt_source=prompt_source,
            prompt_note=prompt_note,
            requested_via=requested_via,
            api_token=api_token,
            client_fields=client_fields or {},
            requested_by=user,
            source_candidate=source_candidate,
            progress_total=first_pass + (params.hires_steps or 0),
            **params.__dict__,
        )
        if article is not None:
            # "Recently updated" on the article list means recently worked on.
            type(article).objects.filter(pk=article.pk).update(updated_at=timezone.now())
        run_enqueue(run=run)
    return run


class QueueLimitReached(ValidationError):
    """This user already has as many runs waiting or running as one account may (the API
    answers 429; a form shows the message at the top)."""


def _check_queue_limit(user: Any) -> None:
    """One account cannot fill the GPU queue: at most ``HOFFDESK_USER_QUEUE_LIMIT`` of its runs
    queued or running. The user's row is locked first, so two submits cannot both slip in."""
    limit = settings.HOFFDESK_USER_QUEUE_LIMIT
    if not limit:
        return
    get_user_model().objects.select_for_update().filter(pk=user.pk).exists()
    waiting = GenerationRun.objects.filter(
        requested_by=user, status__in=[GenerationRun.Status.QUEUED, GenerationRun.Status.RUNNING]
    ).count()
    if waiting >= limit:
        raise QueueLimitReached(
            {
                NON_FIELD_ERRORS: (
                    f"You already have {waiting} runs waiting or running; the limit is {limit} per person, so the GPU "
                    "stays fair. Wait for some to finish or cancel one, then try again."
                )
            }
        )


def run_regenerate(
    *,
    source: GenerationRun,
    mode: str,
    candidate: Candidate | None = None,
    requested_by: Any = None,
    prompt: str | None = None,
    negative_prompt: str | None = None,
    preset: StylePreset | None = None,
    model: str | None = None,
    count: Any = None,
    steps: Any = None,
    guidance: Any = None,
    seed: Any = None,
    variation_strength: Any = None,
    requested_via: str = "",
    api_token: Any = None,
    hires_scale: Any = None,
    hires_steps: Any = None,
    hires_denoise: Any = None,
    hires_upscaler: Any = None,
) -> GenerationRun:
    """A new run made from ``source`` (and one of its candidates), linked to it as ``parent``.

    ``more``: the recipe with new random seeds. ``compose``: the candidate's seed with the edited
    prompt, preset, steps or guidance. ``exact``: the recipe, seeds, variation and batch size
    unchanged, which reproduces the bytes on the same machine. ``seed``: a seed the editor typed.
    ``variations``: the candidate's seed blended with new seeds at ``variation_strength``.
    ``upscale`` ("Make hero size"): the candidate's own image, enlarged to at least the hero's
    generation size by the hires pass on the source's model and seed, no new composition.
    ``final`` (Final render, draft runs only): the candidate's seed and the draft's prompt at full
    quality, no cache. A draft's other regenerations stay drafts.
    Count and model may change in every mode but ``upscale`` and ``final``; a blank value keeps the source's.
    """
    if mode not in RegenerateMode.values:
        raise ValidationError({"mode": f"mode must be one of {', '.join(RegenerateMode.values)}, not {mode!r}."})
    if source.runs_in_cloud:
        raise ValidationError({"mode": _cloud_regenerate_refusal(source, mode)})
    if mode in CANDIDATE_ONLY_MODES and candidate is None:
        raise ValidationError({"mode": f"{RegenerateMode(mode).label.split(':')[0]} needs a candidate to start from."})
    if candidate is not None and candidate.run_id != source.pk:
        raise ValidationError({"candidate": "That candidate does not belong to this run."})
    model = model or source.model_profile
    same_model = model == source.model_profile
    values: dict[str, Any] = {
        "prompt": prompt if prompt and prompt.strip() else source.prompt,
        "negative_prompt": source.negative_prompt if negative_prompt is None else negative_prompt,
        "preset": preset or source.preset,
        "steps": source.steps if steps in (None, "") else steps,
        "guidance": source.guidance if guidance in (None, "") else guidance,
        "count": source.count if count in (None, "") else count,
        # A draft's regenerations are drafts too (Final render is the way to full quality).
        "draft": source.draft,
        # A size made for another model may not suit this one: then the new model's own size.
        "width": source.width if same_model else None,
        "height": source.height if same_model else None,
    }
    if mode == RegenerateMode.EXACT:
        values.update(
            prompt=source.prompt,
            negative_prompt=source.negative_prompt,
            steps=source.steps,
            guidance=source.guidance,
            seed=source.base_seed,
            variation_strength=source.variation_strength if source.is_variation else None,
            variation_seed=source.variation_seed,
            draft_cache=source.draft_cache or None,
        )
    elif mode == RegenerateMode.COMPOSE:
        assert candidate is not None
        values["seed"] = candidate.seed
    elif mode == RegenerateMode.SEED:
        if seed in (None, ""):
            raise ValidationError({"seed": "Type the seed to start from."})
        values["seed"] = seed
    elif mode == RegenerateMode.VARIATIONS:
        assert candidate is not None
        if variation_strength in (None, ""):
            raise ValidationError(
                {"variation_strength": f"Pick a strength from {MIN_VARIATION_STRENGTH} to {MAX_VARIATION_STRENGTH}."}
            )
        values.update(seed=candidate.seed, variation_strength=variation_strength)
    elif mode == RegenerateMode.UPSCALE:
        assert candidate is not None
        return _enlarge(
            source=source,
            candidate=candidate,
            requested_by=requested_by,
            requested_via=requested_via,
            api_token=api_token,
            hires_scale=hires_scale,
            hires_steps=hires_steps,
            hires_denoise=hires_denoise,
            hires_upscaler=hires_upscaler,
        )
    elif mode == RegenerateMode.FINAL:
        assert candidate is not None
        return _final_render(
            source=source,
            candidate=candidate,
            requested_by=requested_by,
            requested_via=requested_via,
            api_token=api_token,
        )
    # The hires pass: what is asked for now, else the source's (a recipe kept), else (another
    # model) that model's preset's. hires_scale 0 turns it off.
    keep = same_model or mode == RegenerateMode.EXACT
    asked = {"hires_scale": hires_scale, "hires_steps": hires_steps, "hires_denoise": hires_denoise}
    asked["hires_upscaler"] = hires_upscaler
    for field, value in asked.items():
        if mode == RegenerateMode.EXACT or value in (None, ""):
            value = getattr(source, field) if keep else None
            if field == "hires_scale" and keep and value is None:
                value = 0
        values[field] = value
    if mode == RegenerateMode.EXACT and same_model and source.comfy_workflow_id:
        values["comfy_workflow"] = source.comfy_workflow  # the graph version it ran, not the newest
    return run_submit(
        article=source.article,
        model=model,
        requested_by=requested_by,
        parent=source,
        regenerate_mode=mode,
        requested_via=requested_via,
        api_token=api_token,
        **values,
    )


def _cloud_regenerate_refusal(source: GenerationRun, mode: str) -> str:
    """A cloud run (``generation.cloud``) has no seed to re-run; more of it costs money, which
    the Make in the cloud button asks for with the price shown first."""
    made = f"run {source.pk} was made in the cloud ({source.model_profile})"
    if mode == RegenerateMode.MORE:
        return f"More like this is not offered: {made}; press Make in the cloud again, it shows the price first."
    return f"{RegenerateMode(mode).short_label} needs a seed, and {made}, which has none: it cannot be made again."


def _final_render(
    *, source: GenerationRun, candidate: Candidate, requested_by: Any, requested_via: str, api_token: Any
) -> GenerationRun:
    """Final render: the draft candidate's seed (and variation seed) with the draft's prompt, size,
    guidance and hires pass, at full quality: the preset's (else the model's) full steps and no
    cache, one candidate. The editor culls cheap drafts and pays the full price for the keeper
    only; whatever else was asked (prompt, steps, count) is ignored, so the keeper stays the keeper."""
    if not source.draft:
        raise ValidationError(
            {"mode": f"Final render is for a draft's candidates; run {source.pk} is not a draft (try an exact re-run)."}
        )
    variation: dict[str, Any] = {}
    if source.is_variation:
        assert source.variation_seed is not None
        variation = {
            "variation_seed": source.variation_seed + candidate.index,
            "variation_strength": source.variation_strength,
        }
    return run_submit(
        article=source.article,
        model=source.model_profile,
        requested_by=requested_by,
        parent=source,
        regenerate_mode=RegenerateMode.FINAL,
        requested_via=requested_via,
        api_token=api_token,
        prompt=source.prompt,
        negative_prompt=source.negative_prompt,
        preset=source.preset,
        guidance=source.guidance,
        seed=candidate.seed,
        count=1,
        width=source.width,
        height=source.height,
        hires_scale=source.hires_scale if source.hires_scale is not None else 0,
        hires_steps=source.hires_steps,
        hires_denoise=source.hires_denoise,
        hires_upscaler=source.hires_upscaler,
        source_candidate=candidate,
        **variation,
    )


def _enlarge(
    *,
    source: GenerationRun,
    candidate: Candidate,
    requested_by: Any,
    requested_via: str,
    api_token: Any,
    hires_scale: Any,
    hires_steps: Any,
    hires_denoise: Any,
    hires_upscaler: Any,
) -> GenerationRun:
    """Make hero size: one candidate, the source candidate's image through the hires pass on the
    source's model, seed and prompt (the pass needs them), to at least the hero's size."""
    needed = hero_scale(candidate.width, candidate.height)
    if hires_scale in (None, "") and needed > MAX_HIRES_SCALE:
        tw, th = suggested_generation_size(settings.HOFFDESK_HERO_SIZE)
        raise ValidationError(
            {
                "mode": (
                    f"This image is {candidate.width}x{candidate.height}: even x{MAX_HIRES_SCALE:g} stays below the "
                    f"hero's {tw}x{th}. Regenerate it at {tw}x{th} (keep this composition) instead."
                )
            }
        )
    return run_submit(
        article=source.article,
        model=source.model_profile,
        requested_by=requested_by,
        parent=source,
        regenerate_mode=RegenerateMode.UPSCALE,
        requested_via=requested_via,
        api_token=api_token,
        prompt=source.prompt,
        negative_prompt=source.negative_prompt,
        preset=source.preset,
        steps=source.steps,
        guidance=source.guidance,
        seed=candidate.seed,
        count=1,
        width=candidate.width,
        height=candidate.height,
        hires_scale=hires_scale if hires_scale not in (None, "") else needed,
        hires_steps=hires_steps,
        hires_denoise=hires_denoise,
        hires_upscaler=hires_upscaler,
        source_candidate=candidate,
    )


def run_enqueue(*, run: GenerationRun) -> None:
    """Hand the run to the worker after commit, so a worker never sees a rolled-back row."""
    from django_q.tasks import async_task

    run_id = run.pk
    # Named GPU queue: the periodic sweep and worker-start recovery also run on the light
    # cluster, whose own queue is the default there.
    transaction.on_commit(
        lambda: async_task(
            "generation.tasks.run_generate",
            run_id,
            task_name=run_task_name(run_id),
            group="generation",
            # A cloud run needs no GPU: the light cluster calls the API (generation/cloud.py).
            cluster="light" if run.runs_in_cloud else gpu_queue_name(),
        )
    )


def run_task_name(run_id: int) -> str:
    return f"run-{run_id}"


def gpu_queue_name() -> str:
    """The GPU cluster's name, which is also its ORM broker queue's key."""
    return str(settings.Q_CLUSTER["name"])


def run_cancel(*, run: GenerationRun) -> bool:
    """Cancel a queued run at once or ask a running one to stop; False when already finished."""
    return run_cancel_and_discard(run=run)


def run_cancel_and_discard(*, run: GenerationRun, worker_stopped: bool = False) -> bool:
    """Cancel, then delete the files no row points at: the one place that does both.

    An editor's cancel (``worker_stopped=False``) ends a queued run at once and asks a running
    one to stop at its next progress write. The worker that then stopped (``worker_stopped=True``)
    ends its own attempt cancelled, if an editor asked for it; ``run`` must still carry that
    attempt's number (do not refresh it first). Whoever ends the run deletes its files. True when
    the cancel was asked for (editor) or this attempt ended cancelled (worker).
    """
    changed = run.mark_cancelled() if worker_stopped else run.request_cancel()
    if changed and run.status == GenerationRun.Status.CANCELLED:
        run_discard_files(run=run)
    return changed


def run_discard_files(*, run: GenerationRun, attempts: Iterable[int] | None = None) -> None:
    """Delete the image files that a run's attempts may have written and no row points at.

    Each attempt writes names of its own (``candidate_file_name``), so by default this looks at
    every attempt so far, and at the names from before names carried the attempt. With
    ``attempts``, only those: a live attempt clears the earlier ones' files before it records its
    success, and its own before it records its failure, so a run that shows finished has exactly
    its own files in storage. (Never another attempt that may still be live: its files are on
    their way to its rows.)
    """
    storage = candidate_storage()
    recorded = set(run.candidates.values_list("image", flat=True))
    legacy = attempts is None
    if attempts is None:
        current = GenerationRun.objects.filter(pk=run.pk).values_list("attempts", flat=True).first()
        attempts = range(1, max(run.attempts, current or 0, 1) + 1)
    attempt_numbers = list(attempts)
    for index, seed in enumerate(run.seeds):
        names = [candidate_file_name(run.pk, index, seed, attempt=a) for a in attempt_numbers]
        if legacy:
            names.append(f"runs/{run.pk:06d}/{index:02d}-seed{seed}.png")  # before names carried the attempt
        for name in names:
            if name not in recorded and storage.exists(name):
                storage.delete(name)
