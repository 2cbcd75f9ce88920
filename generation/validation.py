"""Checking a run request before anything is written.

Every entry point (the dashboard's forms, the command line, the JSON API, the image APIs) sends
its fields through ``run_validate``, so bad input is refused the same way everywhere: a
``ValidationError`` that maps each field to a message an editor can act on, and nothing queued.

The limits every door shares are stated here once: text lengths (``TEXT_LIMITS``), images per
run (``MAX_IMAGES``), and the GPU time a run may need (``run_gpu_seconds_estimate`` against
``HOFFDESK_TASK_TIMEOUT``). Sizes and steps come from the model profile asked for and, when a
stand-in runs for it, from the stand-in too.
"""

from __future__ import annotations

import secrets
import statistics
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from generation.demo import EngineChoice, WeightsMissing, engine_profile_expected, upscalers_available
from generation.drafts import draft_cache_for, draft_steps
from generation.models import ComfyWorkflow, GenerationRun, RegenerateMode, StylePreset
from generation.profiles import (
    HIRES_MAX_EDGE,
    HIRES_MAX_PIXELS,
    MAX_SEED,
    ModelProfile,
    UnknownProfile,
    get_profile,
    hires_size,
    suggested_generation_size,
)
from generation.prompts import prompt_length_warning

# Characters per text field, for every door (the API schemas state the same numbers).
MAX_PROMPT_LENGTH = 2000
MAX_NEGATIVE_PROMPT_LENGTH = 2000
MAX_NAME_LENGTH = 80  # a model profile's, preset's or style's name as a client sends it
TEXT_LIMITS = {"prompt": MAX_PROMPT_LENGTH, "negative_prompt": MAX_NEGATIVE_PROMPT_LENGTH, "model": MAX_NAME_LENGTH}
# Candidates per run, whichever door asks (AUTOMATIC1111's batch_size x n_iter, OpenAI's n).
MAX_IMAGES = 8
DEFAULT_COUNT = 4


@dataclass(frozen=True)
class RunParameters:
    model_profile: str
    engine_profile: str
    engine_note: str
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
    hires_scale: float | None = None
    hires_upscaler: str = ""
    hires_steps: int | None = None
    hires_denoise: float | None = None
    # A ComfyUI run: the workflow version it runs (``ComfyWorkflow``); None runs on diffusers.
    comfy_workflow: Any = None
    # Draft mode (``generation.drafts``): fewer steps, and the transformer cache the worker applies.
    draft: bool = False
    draft_cache: dict[str, Any] = dataclass_field(default_factory=dict)


# Seconds the checks before queueing wait for a ComfyUI server (an editor waits on them).
COMFYUI_CHECK_TIMEOUT = 5.0

MIN_VARIATION_STRENGTH = 0.05
MAX_VARIATION_STRENGTH = 0.5


CANDIDATE_ONLY_MODES = (
    RegenerateMode.COMPOSE,
    RegenerateMode.VARIATIONS,
    RegenerateMode.UPSCALE,
    RegenerateMode.FINAL,
)

# The hires pass: how far it may enlarge, and what it does when a request turns it on without
# saying more (AUTOMATIC1111's defaults are close: strength 0.7, same steps; ours keep the
# composition of a fast model and cost little).
MIN_HIRES_SCALE, MAX_HIRES_SCALE = 1.0, 4.0
DEFAULT_HIRES_DENOISE = 0.5
LANCZOS = "lanczos"


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


def _as_bool(value: Any, field: str, errors: dict[str, str]) -> bool:
    """Yes or no from a form ("on"), a query string or JSON; blank is no."""
    if value is None or value == "" or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text not in ("0", "false", "no", "off"):
        errors[field] = f"{field} must be true or false, not {value!r}."
    return False


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


def _check_text(field: str, value: Any, errors: dict[str, str]) -> str:
    """``value`` stripped, or "" with an error when it is no text or longer than its limit."""
    if value is None:
        return ""
    if not isinstance(value, str):
        errors[field] = f"{field} must be text."
        return ""
    value = value.strip()
    limit = TEXT_LIMITS[field]
    if len(value) > limit:
        errors[field] = f"{field} must be at most {limit} characters, not {len(value)}."
        return ""
    return value


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
    hires_scale: Any = None,
    hires_upscaler: Any = None,
    hires_steps: Any = None,
    hires_denoise: Any = None,
    enlarge_only: bool = False,
    comfy_workflow: Any = None,
    draft: Any = False,
    draft_cache: dict[str, Any] | None = None,
) -> RunParameters:
    """Check a request against its model profile, and against the stand-in that will run for it;
    ``ValidationError`` maps field -> message. Every field is checked before anything is derived
    from it (a random seed from the count, a time estimate from the size).

    ``hires_*`` turn on the hires pass (a preset's are the defaults; ``hires_scale`` 0 turns a
    preset's off). ``enlarge_only``: "Make hero size", the hires pass alone on an existing image
    of ``width`` x ``height``, so the first pass's size limits do not apply."""
    errors: dict[str, str] = {}
    name = _check_text("model", model, errors) or (
        preset.model_profile if preset and preset.model_profile else settings.HOFFDESK_DEFAULT_MODEL
    )
    if errors:
        raise ValidationError(errors)
    try:
        profile = get_profile(name)
    except UnknownProfile as exc:
        raise ValidationError({"model": str(exc.args[0])}) from None
    # A preset's ComfyUI workflow runs when the preset's own model is what is asked for; the
    # profile then only sets the size and step limits, and no diffusers weights are needed.
    workflow = comfy_workflow or (
        preset.comfy_workflow
        if preset is not None and preset.comfy_workflow_id and preset.model_profile in ("", profile.name)
        else None
    )  # an exact re-run names the version its source ran; otherwise the preset's current one
    if workflow is not None:
        choice = EngineChoice(engine_profile=profile.name, note="")
    else:
        try:
            choice = engine_profile_expected(profile)
        except WeightsMissing as exc:
            raise ValidationError({"model": str(exc)}) from None
    engine = get_profile(choice.engine_profile)

    prompt = _check_text("prompt", prompt, errors)
    if not prompt and "prompt" not in errors:
        errors["prompt"] = "prompt must not be empty."
    negative = _check_text("negative_prompt", negative_prompt, errors)

    w = _as_int(width, "width", errors)
    h = _as_int(height, "height", errors)
    # A preset's size, steps and guidance are made for its own model: another model asked for
    # explicitly gets its own defaults.
    recipe = preset if preset and preset.model_profile in ("", profile.name) else None
    w = w if w is not None else (recipe.width if recipe and recipe.width else profile.native_width)
    h = h if h is not None else (recipe.height if recipe and recipe.height else profile.native_height)
    if "width" not in errors and not enlarge_only:
        _check_size(profile, "width", w, errors)
    if "height" not in errors and not enlarge_only:
        _check_size(profile, "height", h, errors)
    if "width" not in errors and "height" not in errors and not enlarge_only:
        _check_pixels(profile, engine, w, h, errors)

    is_draft = _as_bool(draft, "draft", errors)
    n_steps = _as_int(steps, "steps", errors)
    if n_steps is None:
        n_steps = recipe.steps if recipe and recipe.steps else profile.default_steps
        n_steps = draft_steps(n_steps) if is_draft else n_steps
    if "steps" not in errors:
        for limit in (profile, engine):
            if not 1 <= n_steps <= limit.max_steps:
                errors["steps"] = f"steps must be between 1 and {limit.max_steps} for {limit.name}, not {n_steps}."
                break

    n = _as_int(count, "count", errors)
    n = DEFAULT_COUNT if n is None else n
    if "count" not in errors and not 1 <= n <= MAX_IMAGES:
        errors["count"] = f"count must be between 1 and {MAX_IMAGES}, not {n}."
    n_valid = n if "count" not in errors else 1  # what the seeds below may be derived from

    g = _as_float(guidance, "guidance", errors)
    if g is None:
        g = recipe.guidance if recipe and recipe.guidance is not None else profile.default_guidance
    if "guidance" not in errors and not 0.0 <= g <= profile.max_guidance:
        errors["guidance"] = f"guidance must be between 0 and {profile.max_guidance} for {profile.name}, not {g}."

    s = _as_int(seed, "seed", errors)
    if s is None and "seed" not in errors:
        s = secrets.randbelow(MAX_SEED - n_valid + 2)
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
            v_seed = secrets.randbelow(MAX_SEED - n_valid + 2)
        elif v_seed is not None and not 0 <= v_seed <= MAX_SEED - n_valid + 1:
            errors["variation_seed"] = f"variation seed + count - 1 must be between 0 and {MAX_SEED}, not {v_seed}."
    elif strength is None:
        v_seed = None

    hires = _check_hires(
        profile, engine, recipe, w, h, n_steps, errors,
        scale=hires_scale, upscaler=hires_upscaler, steps=hires_steps, denoise=hires_denoise,
    )  # fmt: skip
    if enlarge_only and hires.scale is None and "hires_scale" not in errors:
        errors["hires_scale"] = "Make hero size needs a hires pass: hires_scale from 1 to 4."
    if workflow is not None:
        _check_comfyui_request(
            errors, hires_scale=hires_scale, variation=strength is not None, enlarge_only=enlarge_only
        )
        hires = HiresPass()
        if is_draft:
            errors["draft"] = "A ComfyUI workflow run cannot be a draft: its graph sets its own steps and cache."
    elif not errors:
        first_pass = 0 if enlarge_only else n_steps
        _check_gpu_time(engine, w, h, first_pass, n, errors, hires=hires)
    if errors:
        raise ValidationError(errors)
    if workflow is not None:
        comfyui_workflow_problem = comfyui_workflow_check(workflow)
        if comfyui_workflow_problem:
            raise ValidationError({"preset": comfyui_workflow_problem})
    assert s is not None
    return RunParameters(
        comfy_workflow=workflow,
        hires_scale=hires.scale,
        hires_upscaler=hires.upscaler,
        hires_steps=hires.steps,
        hires_denoise=hires.denoise,
        variation_seed=v_seed,
        variation_strength=strength or 0.0,
        model_profile=profile.name,
        engine_profile=engine.name,
        engine_note=choice.note,
        prompt_warning=prompt_length_warning(prompt, profile),
        prompt=prompt,
        negative_prompt=negative,
        width=w,
        height=h,
        steps=n_steps,
        guidance=g,
        base_seed=s,
        count=n,
        draft=is_draft,
        # An exact re-run passes its source's cache; otherwise the engine's family decides it.
        draft_cache=(dict(draft_cache) if draft_cache else draft_cache_for(engine.family)) if is_draft else {},
    )


def _check_pixels(profile: ModelProfile, engine: ModelProfile, w: int, h: int, errors: dict[str, str]) -> None:
    """A stand-in takes the edges of the real profile it runs for (a demo install still makes a
    1216x640 hero), within its own pixel budget; a profile asked for directly, its own."""
    for limit in (profile, engine):
        if limit.max_pixels is not None and w * h > limit.max_pixels:
            edge = int(limit.max_pixels**0.5)
            role = f", the stand-in that runs {profile.name} here" if limit is not profile else ""
            errors["width"] = (
                f"width x height must be at most {limit.max_pixels} pixels ({edge}x{edge}) on {limit.name}{role}; "
                f"{w}x{h} is {w * h}."
            )
            return


def engine_limits_problem(*, profile: ModelProfile, engine: ModelProfile, width: int, height: int, steps: int) -> str:
    """What the profile that runs cannot do of a run checked against another guess (the worker
    that claims a run may choose a stand-in the web did not expect); "" when it fits."""
    errors: dict[str, str] = {}
    _check_pixels(profile, engine, width, height, errors)
    if not 1 <= steps <= engine.max_steps:
        errors["steps"] = f"steps must be between 1 and {engine.max_steps} for {engine.name}, not {steps}."
    return " ".join(errors.values())


# Runs learned from: the newest succeeded ones of a profile with at least this much work (a tiny
# run's fixed costs would make its rate look huge), and the margin put on their median.
LEARN_FROM_RUNS = 20
LEARN_MIN_MEGAPIXEL_STEPS = 1.0
ESTIMATE_MARGIN = 1.25


def seconds_per_megapixel_step(profile: ModelProfile) -> float:
    """GPU seconds per megapixel-step of ``profile``: learned from the workers' past succeeded
    runs that ran it (their median, with a margin), else the profile's conservative default."""
    rows = (
        GenerationRun.objects.filter(
            status=GenerationRun.Status.SUCCEEDED, engine_profile=profile.name, gpu_seconds__isnull=False
        )
        .order_by("-finished_at")
        .values_list("gpu_seconds", "width", "height", "steps", "count")[: LEARN_FROM_RUNS * 2]
    )
    rates = []
    for gpu_seconds, w, h, steps, count in rows:
        work = w * h / 1e6 * steps * count
        if gpu_seconds is not None and work >= LEARN_MIN_MEGAPIXEL_STEPS:
            rates.append(gpu_seconds / work)
    if not rates:
        return profile.seconds_per_megapixel_step
    return statistics.median(rates[:LEARN_FROM_RUNS]) * ESTIMATE_MARGIN


def run_gpu_seconds_estimate(*, profile: ModelProfile, width: int, height: int, steps: int, count: int) -> float:
    """About how many GPU seconds a run of ``profile`` takes (the pipeline, not the model load)."""
    return width * height / 1e6 * steps * count * seconds_per_megapixel_step(profile)


@dataclass(frozen=True)
class HiresPass:
    scale: float | None = None
    upscaler: str = ""
    steps: int | None = None
    denoise: float | None = None
    width: int = 0
    height: int = 0


def _check_hires(
    profile: ModelProfile,
    engine: ModelProfile,
    preset: StylePreset | None,
    w: int,
    h: int,
    first_steps: int,
    errors: dict[str, str],
    *,
    scale: Any,
    upscaler: Any,
    steps: Any,
    denoise: Any,
) -> HiresPass:
    """The hires pass asked for (or the preset's), checked; ``HiresPass()`` when there is none."""
    x = _as_float(scale, "hires_scale", errors)
    if x is None and preset is not None and preset.hires_scale:
        x = preset.hires_scale
    if x is None or x == 0 or "hires_scale" in errors:
        return HiresPass()
    if not MIN_HIRES_SCALE <= x <= MAX_HIRES_SCALE:
        errors["hires_scale"] = f"hires_scale must be between {MIN_HIRES_SCALE:g} and {MAX_HIRES_SCALE:g}, not {x}."
        return HiresPass()
    n = _as_int(steps, "hires_steps", errors)
    if n is None:
        n = (preset.hires_steps if preset else None) or max(1, first_steps // 2)
    limit = min(profile.max_steps, engine.max_steps)
    if "hires_steps" not in errors and not 1 <= n <= limit:
        errors["hires_steps"] = f"hires_steps must be between 1 and {limit} for {engine.name}, not {n}."
    d = _as_float(denoise, "hires_denoise", errors)
    if d is None:
        d = (preset.hires_denoise if preset else None) or DEFAULT_HIRES_DENOISE
    if "hires_denoise" not in errors and not 0.0 < d <= 1.0:
        errors["hires_denoise"] = f"hires_denoise must be above 0 and at most 1, not {d}."
    name = upscaler if upscaler not in (None, "") else ((preset.hires_upscaler if preset else "") or LANCZOS)
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH:
        errors["hires_upscaler"] = f"hires_upscaler must be a name of at most {MAX_NAME_LENGTH} characters."
        name = LANCZOS
    elif name.strip().lower() == LANCZOS:
        name = LANCZOS
    else:
        have = upscalers_available()
        if name not in have:
            errors["hires_upscaler"] = (
                f"No GPU worker has an upscaler named {name!r} (they have: {', '.join(have) or 'none'}); "
                f"drop one into HOFFDESK_MODELS_DIR/upscalers/ or use {LANCZOS}."
            )
    fw, fh = hires_size(w, h, x, engine.size_multiple)
    if fw > HIRES_MAX_EDGE or fh > HIRES_MAX_EDGE or fw * fh > HIRES_MAX_PIXELS:
        errors["hires_scale"] = (
            f"the hires pass would make {fw}x{fh}; at most {HIRES_MAX_EDGE} pixels an edge and "
            f"{HIRES_MAX_PIXELS} pixels in all: ask for a smaller hires_scale."
        )
    return HiresPass(scale=x, upscaler=name, steps=n, denoise=d, width=fw, height=fh)


def hero_scale(width: int, height: int) -> float:
    """The hires_scale that takes a width x height image to at least the hero's generation size
    (1216x640 for the 1200x630 hero), in hundredths, rounded up; above ``MAX_HIRES_SCALE`` when
    the image is too small for one hires pass to get there."""
    import math

    tw, th = suggested_generation_size(settings.HOFFDESK_HERO_SIZE)
    scale = max(tw / width, th / height, MIN_HIRES_SCALE)
    return math.ceil(scale * 100 - 1e-9) / 100


def _check_gpu_time(
    engine: ModelProfile, w: int, h: int, steps: int, count: int, errors: dict[str, str], *, hires: HiresPass
) -> None:
    """Refuse what cannot finish inside the worker's task timeout: django-q2 would kill it."""
    estimate = run_gpu_seconds_estimate(profile=engine, width=w, height=h, steps=steps, count=count)
    if hires.scale is not None and hires.steps:
        estimate += run_gpu_seconds_estimate(
            profile=engine, width=hires.width, height=hires.height, steps=hires.steps, count=count
        )
    limit = settings.HOFFDESK_TASK_TIMEOUT
    if estimate > limit:
        errors["steps"] = (
            f"this run would take about {estimate:.0f} s of GPU time on {engine.name} ({count} x {w}x{h}, "
            f"{steps} steps), more than the task timeout of {limit} s (HOFFDESK_TASK_TIMEOUT): ask for fewer "
            "steps, fewer candidates or a smaller size."
        )


def _check_comfyui_request(errors: dict[str, str], *, hires_scale: Any, variation: bool, enlarge_only: bool) -> None:
    """What a ComfyUI workflow cannot do for us: the workflow owns any second pass, and ComfyUI
    has no variation seeds. A preset's own hires settings are simply not used."""
    if enlarge_only:
        errors["mode"] = "Make hero size runs on our diffusers worker; this preset runs on a ComfyUI workflow."
    elif hires_scale not in (None, "", 0, "0") and "hires_scale" not in errors:
        errors["hires_scale"] = "A ComfyUI workflow makes its own passes: put the hires pass in the workflow."
    if variation and "variation_strength" not in errors:
        errors["variation_strength"] = "Variations need our diffusers worker; ComfyUI has no variation seeds."


def comfyui_workflow_check(workflow: ComfyWorkflow) -> str:
    """Why the ComfyUI server cannot run ``workflow`` now, naming what is missing ("" when it
    can): no server configured, the server not answering, a node type or a checkpoint it lacks.
    Asked before queueing, so such a run is refused with the name rather than failing later."""
    from generation.comfyui import checkpoint_choices
    from generation.workflows import read_values

    nodes, problem = comfyui_server_nodes(f"The preset runs on the ComfyUI workflow {workflow}, but")
    if nodes is None:
        return f"{problem} Nothing was queued."
    missing = [
        f"{node.get('class_type')} (node {node_id})"
        for node_id, node in workflow.graph.items()
        if node.get("class_type") not in nodes
    ]
    if missing:
        return f"The ComfyUI server has no node type {', '.join(missing)}, which workflow {workflow} uses."
    checkpoint = read_values(workflow.graph, workflow.mapping).get("checkpoint")
    if checkpoint:
        offered = checkpoint_choices(nodes)
        if checkpoint not in offered:
            return (
                f"The ComfyUI server has no checkpoint {checkpoint!r} that workflow {workflow} loads; "
                f"it has {', '.join(offered) or 'none'}."
            )
    return ""


def comfyui_server_nodes(lead: str = "") -> tuple[dict[str, Any] | None, str]:
    """The node types the configured ComfyUI server has (``/object_info``), asked with a short
    timeout; or None and why not (no server configured, not reachable), ``lead`` starting it."""
    from generation.comfyui import ComfyUIClient, ComfyUIError

    client = ComfyUIClient.from_settings()
    if client is None:
        lead = f"{lead} no" if lead else "No"
        return None, f"{lead} ComfyUI server is configured (set HOFFDESK_COMFYUI_URL)."
    client.timeout = min(client.timeout, COMFYUI_CHECK_TIMEOUT)
    try:
        return client.object_info(), ""
    except ComfyUIError as exc:
        why = str(exc)
    except OSError as exc:
        why = type(exc).__name__
    return None, f"The ComfyUI server is not reachable ({why}); check that it runs."
