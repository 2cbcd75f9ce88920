"""The Magic Wand: one click (or one API call) turns an article into a queued hero run.

It picks the preset (the image style chosen, else the series' look, else the article's
content-type preset), writes the prompt (the local LLM when one is configured, else the prompt
template), reuses the series' seed, and submits the run through ``run_submit``, so it is checked
and queued like any other.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from gallery.models import Series
from generation.llm import llm_configured, llm_write_prompt
from generation.models import GenerationRun, PromptTemplate, StylePreset
from generation.prompts import prompt_render, prompt_values
from generation.services import preset_for_article, prompt_for_article, run_submit


def image_styles() -> list[StylePreset]:
    """The image styles offered beside the Magic Wand, Auto first."""
    return list(StylePreset.objects.filter(image_style=True))


def _preset_named(slug: str, field: str, *, image_style: bool | None = None) -> StylePreset:
    presets = StylePreset.objects.all()
    if image_style is not None:
        presets = presets.filter(image_style=image_style)
    found = presets.filter(slug=slug).first()
    if found is None:
        choices = ", ".join(presets.values_list("slug", flat=True))
        raise ValidationError({field: f"{field} must be one of {choices}, not {slug!r}."})
    return found


def wand_preset(*, article: Any, style: str | None = None, preset: str | None = None) -> StylePreset | None:
    """The preset the Magic Wand uses: ``preset`` (any preset's slug) or ``style`` (an image
    style's slug) when given; for Auto, the series' look, else the content type's preset."""
    if preset:
        return _preset_named(preset, "preset")
    if style and style != StylePreset.AUTO:
        return _preset_named(style, "style", image_style=True)
    series = series_for(article=article)
    if series is not None and series.preset is not None:
        return series.preset
    return preset_for_article(article=article)


def series_for(*, article: Any) -> Any:
    """The article's ``Series`` record (made on first use), or None outside a series."""
    if not article.series:
        return None
    try:
        with transaction.atomic():
            series, _ = Series.objects.get_or_create(name=article.series)
    except IntegrityError:  # made by a concurrent request
        series = Series.objects.get(name=article.series)
    return series


def wand_prompt(*, article: Any, preset: StylePreset | None) -> tuple[str, str, PromptTemplate | None, str]:
    """(prompt, source, template, note): the LLM's prompt with the preset's style added, or
    the template's, with why the LLM was skipped when it was configured but failed."""
    note = ""
    if llm_configured():
        values = prompt_values(article=article, preset=preset)
        written = llm_write_prompt(title=article.title, summary=article.summary, style=values["style"])
        if written.text:
            return prompt_render("{llm}. {style}. {palette}", {**values, "llm": written.text}), "llm", None, ""
        note = f"The LLM prompt writer was skipped: {written.reason}. The prompt template was used instead."
    prompt, template = prompt_for_article(article=article, preset=preset)
    return prompt, "template", template, note


def article_wand(
    *,
    article: Any,
    requested_by: Any = None,
    style: str | None = None,
    preset: str | None = None,
    prompt: str | None = None,
    negative_prompt: str | None = None,
    model: str | None = None,
    seed: Any = None,
    count: Any = None,
    width: Any = None,
    height: Any = None,
    steps: Any = None,
    guidance: Any = None,
    requested_via: str = "",
    api_token: Any = None,
    hires_scale: Any = None,
    hires_upscaler: Any = None,
    hires_steps: Any = None,
    hires_denoise: Any = None,
    draft: Any = None,
) -> GenerationRun:
    """Queue a hero run for ``article``; a given ``prompt`` is used as typed, the rest of the
    Magic Wand (preset, series seed) still applies. Bad input raises ``ValidationError`` naming
    the field, and nothing is queued. ``draft`` None: the preset's ``drafts_by_default`` (never for a
    ComfyUI preset, whose graph sets its own steps)."""
    chosen = wand_preset(article=article, style=style, preset=preset)
    if draft is None:
        draft = bool(chosen and chosen.drafts_by_default and not chosen.comfy_workflow_id)
    series = series_for(article=article)
    if seed in (None, "") and series is not None and series.seed is not None:
        seed = series.seed
    source, template, note = "typed", None, ""
    if not (prompt or "").strip():
        prompt, source, template, note = wand_prompt(article=article, preset=chosen)
    run = run_submit(
        article=article,
        requested_by=requested_by,
        preset=chosen,
        prompt=prompt,
        negative_prompt=negative_prompt,
        model=model,
        seed=seed,
        count=count,
        width=width,
        height=height,
        steps=steps,
        guidance=guidance,
        hires_scale=hires_scale,
        hires_upscaler=hires_upscaler,
        hires_steps=hires_steps,
        hires_denoise=hires_denoise,
        draft=draft,
        prompt_source=source,
        prompt_template=template,
        prompt_note=note,
        requested_via=requested_via,
        api_token=api_token,
    )
    if series is not None and series.seed is None:
        # The series' first run sets its look until an approved hero (or an editor) locks one.
        type(series).objects.filter(pk=series.pk, seed__isnull=True).update(seed=run.base_seed, preset=chosen)
    return run
