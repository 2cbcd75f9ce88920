"""Checking a run request before anything is written.

Every entry point (the dashboard's forms, the command line, the JSON API, the image APIs) sends
its fields through ``run_validate``, so bad input is refused the same way everywhere: a
``ValidationError`` that maps each field to a message an editor can act on, and nothing queued.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from generation.demo import WeightsMissing, engine_profile_for
from generation.models import RegenerateMode, StylePreset
from generation.profiles import MAX_SEED, ModelProfile, UnknownProfile, get_profile
from generation.prompts import prompt_length_warning

MAX_PROMPT_LENGTH = 2000


@dataclass(frozen=True)
class RunParameters:
    model_profile: str
    engine_profile: str
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    base_seed: int
    count: int
    variation_seed: int | None = None
    variation_strength: float = 0.0
    prompt_warning: str = ""


MIN_VARIATION_STRENGTH = 0.05
MAX_VARIATION_STRENGTH = 0.5


CANDIDATE_ONLY_MODES = (RegenerateMode.COMPOSE, RegenerateMode.VARIATIONS)


def _as_int(value: Any, field: str, errors: dict[str, str]) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        errors[field] = f"{field} must be a whole number."
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        errors[field] = f"{field} must be a whole number, not {value!r}."
        return None


def _as_float(value: Any, field: str, errors: dict[str, str]) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        errors[field] = f"{field} must be a number, not {value!r}."
        return None
    if number != number or number in (float("inf"), float("-inf")):
        errors[field] = f"{field} must be a finite number."
        return None
    return number


def _check_size(profile: ModelProfile, field: str, value: int, errors: dict[str, str]) -> None:
    if not profile.min_size <= value <= profile.max_size:
        errors[field] = (
            f"{field} must be between {profile.min_size} and {profile.max_size} pixels for {profile.name}, not {value}."
        )
    elif value % profile.size_multiple:
        lower = value - value % profile.size_multiple
        errors[field] = (
            f"{field} must be a multiple of {profile.size_multiple} for {profile.name}; "
            f"{value} is not (try {lower} or {lower + profile.size_multiple})."
        )


def run_validate(
    *,
    model: str | None = None,
    prompt: str,
    negative_prompt: str = "",
    width: Any = None,
    height: Any = None,
    steps: Any = None,
    guidance: Any = None,
    seed: Any = None,
    count: Any = None,
    preset: StylePreset | None = None,
    variation_strength: Any = None,
    variation_seed: Any = None,
) -> RunParameters:
    """Check a request against its model profile; ``ValidationError`` maps field -> message."""
    errors: dict[str, str] = {}
    name = model or (preset.model_profile if preset and preset.model_profile else settings.HOFFDESK_DEFAULT_MODEL)
    try:
        profile = get_profile(name)
    except UnknownProfile as exc:
        raise ValidationError({"model": str(exc.args[0])}) from None
    try:
        engine_profile = engine_profile_for(profile)
    except WeightsMissing as exc:
        raise ValidationError({"model": str(exc)}) from None

    prompt = (prompt or "").strip()
    if not prompt:
        errors["prompt"] = "prompt must not be empty."
    elif len(prompt) > MAX_PROMPT_LENGTH:
        errors["prompt"] = f"prompt must be at most {MAX_PROMPT_LENGTH} characters, not {len(prompt)}."

    w = _as_int(width, "width", errors)
    h = _as_int(height, "height", errors)
    # A preset's size, steps and guidance are made for its own model: another model asked for
    # explicitly gets its own defaults.
    recipe = preset if preset and preset.model_profile in ("", profile.name) else None
    w = w if w is not None else (recipe.width if recipe and recipe.width else profile.native_width)
    h = h if h is not None else (recipe.height if recipe and recipe.height else profile.native_height)
    if "width" not in errors:
        _check_size(profile, "width", w, errors)
    if "height" not in errors:
        _check_size(profile, "height", h, errors)

    n_steps = _as_int(steps, "steps", errors)
    if n_steps is None:
        n_steps = recipe.steps if recipe and recipe.steps else profile.default_steps
    if "steps" not in errors and not 1 <= n_steps <= profile.max_steps:
        errors["steps"] = f"steps must be between 1 and {profile.max_steps} for {profile.name}, not {n_steps}."

    n = _as_int(count, "count", errors)
    n = 4 if n is None else n
    if "count" not in errors and not 1 <= n <= profile.max_count:
        errors["count"] = f"count must be between 1 and {profile.max_count} for {profile.name}, not {n}."

    g = _as_float(guidance, "guidance", errors)
    if g is None:
        g = recipe.guidance if recipe and recipe.guidance is not None else profile.default_guidance
    if "guidance" not in errors and not 0.0 <= g <= profile.max_guidance:
        errors["guidance"] = f"guidance must be between 0 and {profile.max_guidance} for {profile.name}, not {g}."

    s = _as_int(seed, "seed", errors)
    if s is None and "seed" not in errors:
        s = secrets.randbelow(MAX_SEED - max(n, 1) + 2)
    elif s is not None and not 0 <= s <= MAX_SEED:
        errors["seed"] = f"seed must be between 0 and {MAX_SEED}, not {s}."
    elif s is not None and "count" not in errors and s + n - 1 > MAX_SEED:
        errors["seed"] = f"seed + count - 1 must not pass {MAX_SEED}; the last candidate would get {s + n - 1}."

    strength = _as_float(variation_strength, "variation_strength", errors)
    v_seed = _as_int(variation_seed, "variation_seed", errors)
    if strength is not None and "variation_strength" not in errors:
        if not MIN_VARIATION_STRENGTH <= strength <= MAX_VARIATION_STRENGTH:
            errors["variation_strength"] = (
                f"variation strength must be between {MIN_VARIATION_STRENGTH} and {MAX_VARIATION_STRENGTH}, "
                f"not {strength}."
            )
        elif v_seed is None and "variation_seed" not in errors:
            v_seed = secrets.randbelow(MAX_SEED - max(n, 1) + 2)
        elif v_seed is not None and not 0 <= v_seed <= MAX_SEED - max(n, 1) + 1:
            errors["variation_seed"] = f"variation seed + count - 1 must be between 0 and {MAX_SEED}, not {v_seed}."
    elif strength is None:
        v_seed = None

    if errors:
        raise ValidationError(errors)
    assert s is not None
    return RunParameters(
        variation_seed=v_seed,
        variation_strength=strength or 0.0,
        model_profile=profile.name,
        engine_profile=engine_profile,
        prompt_warning=prompt_length_warning(prompt, profile),
        prompt=prompt,
        negative_prompt=(negative_prompt or "").strip(),
        width=w,
        height=h,
        steps=n_steps,
        guidance=g,
        base_seed=s,
        count=n,
    )
