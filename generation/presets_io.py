"""Style presets to and from JSON: ``manage.py presets export|import``.

The file is a JSON array of objects with the fields of ``PRESET_FIELDS``, one per preset, keyed
by ``slug``. Import is all or nothing: every record is checked (with the admin's own model
validation, and the model profile against the known profiles) before any is written.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.forms import modelform_factory

from generation.models import StylePreset

PRESET_FIELDS = (
    "slug",
    "name",
    "description",
    "model_profile",
    "prompt_suffix",
    "negative_prompt",
    "palette",
    "art_direction",
    "width",
    "height",
    "steps",
    "guidance",
    "content_types",
    "image_style",
    "position",
)

PresetForm = modelform_factory(StylePreset, fields=PRESET_FIELDS)


class PresetsInvalid(Exception):
    def __init__(self, problems: list[tuple[int, str, str]]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


def presets_export() -> list[dict[str, Any]]:
    return [{field: getattr(p, field) for field in PRESET_FIELDS} for p in StylePreset.objects.all()]


def presets_import(*, records: Any) -> dict[str, list[str]]:
    """Create or update presets by slug; ``PresetsInvalid`` lists (index, field, message) and
    nothing is written when any record is bad."""
    if not isinstance(records, list):
        raise PresetsInvalid([(-1, "file", "must be a JSON array of preset objects")])
    problems: list[tuple[int, str, str]] = []
    forms = []
    seen: dict[str, int] = {}
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            problems.append((index, "record", "must be a JSON object"))
            continue
        unknown = sorted(set(record) - set(PRESET_FIELDS))
        for field in unknown:
            problems.append((index, field, f"unknown field; use {', '.join(PRESET_FIELDS)}"))
        slug = record.get("slug")
        if not isinstance(slug, str) or not slug:
            problems.append((index, "slug", "is required"))
            continue
        if slug in seen:
            problems.append((index, "slug", f"{slug!r} appears twice (also record {seen[slug]})"))
            continue
        seen[slug] = index
        existing = StylePreset.objects.filter(slug=slug).first()
        base = existing if existing is not None else StylePreset()  # the model's defaults
        data = {f: _form_value(record[f] if f in record else getattr(base, f)) for f in PRESET_FIELDS}
        if data["image_style"] is False:
            del data["image_style"]  # an unchecked box is an absent key in form data
        form = PresetForm(data=data, instance=existing)
        if not form.is_valid():
            for field, errors in form.errors.items():
                problems.extend((index, field, str(e)) for e in errors)
            continue
        forms.append((form, existing is None))
    if problems:
        raise PresetsInvalid(problems)
    report: dict[str, list[str]] = {"created": [], "updated": []}
    with transaction.atomic():
        for form, created in forms:
            try:
                preset = form.save()
            except ValidationError as exc:  # pragma: no cover - checked above
                raise PresetsInvalid([(-1, "record", str(exc))]) from None
            report["created" if created else "updated"].append(preset.slug)
    return report


def _form_value(value: Any) -> Any:
    """Model forms take lists for JSON fields as JSON text, and None as blank."""
    import json

    if isinstance(value, list | dict):
        return json.dumps(value)
    if value is None:
        return ""
    return value
