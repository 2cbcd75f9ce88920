"""AUTOMATIC1111's web API (``/sdapi/v1/...``, the subset its clients use) on top of our queue.

Open WebUI, SillyTavern and many scripts speak it. Every call needs an API token: HTTP Basic whose
password is the token (Open WebUI's ``AUTOMATIC1111_API_AUTH=user:TOKEN``) or ``Bearer TOKEN``.
``txt2img`` queues a normal run with no article (it lands in the Inbox) and waits for it up to
``HOFFDESK_IMAGE_API_WAIT`` seconds. Errors have AUTOMATIC1111's shape:
``{"error": kind, "detail": "field: message", "body": ..., "errors": {field: [messages]}}``.
See docs/integrations.md.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from PIL import Image

from api.compat import (
    TokenRefused,
    allow_methods,
    is_whole_number,
    json_body,
    release_connection,
    run_pngs,
    run_wait,
    token_from_header,
    wait_seconds,
)
from api.models import ApiToken
from generation.demo import upscalers_available
from generation.models import GenerationRun, RequestedVia
from generation.previews import preview_grid_png
from generation.profiles import UnknownProfile, all_profiles, get_profile
from generation.services import QueueLimitReached, run_cancel, run_submit
from generation.validation import LANCZOS, MAX_IMAGES, MAX_VARIATION_STRENGTH, MIN_VARIATION_STRENGTH

logger = logging.getLogger(__name__)

# Our field names -> theirs, for the service's validation messages.
RENAME = {
    "guidance": "cfg_scale",
    "count": "batch_size",
    "variation_seed": "subseed",
    "variation_strength": "subseed_strength",
    "model": "sd_model_checkpoint",
    "hires_scale": "hr_scale",
    "hires_upscaler": "hr_upscaler",
    "hires_steps": "hr_second_pass_steps",
    "hires_denoise": "denoising_strength",
}
# AUTOMATIC1111's txt2img defaults for its hires fix (StableDiffusionProcessingTxt2Img).
HR_SCALE = 2.0
HR_DENOISING_STRENGTH = 0.75
# Its names for a plain resize; "None" there resizes without a model (Lanczos here).
PLAIN_RESIZE = ("", "none", "lanczos")
# What AUTOMATIC1111 lists as an upscaler's scale when it does not know better.
UPSCALER_SCALE = 4
ERROR_KINDS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    422: "ValidationError",
    429: "QueueLimitReached",
    500: "RunFailed",
    504: "TimeoutError",
}


class A1111Error(Exception):
    def __init__(self, status: int, errors: dict[str, list[str]], detail: str = "", **extra: Any) -> None:
        self.status = status
        self.errors = errors
        self.detail = detail or "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
        self.extra = extra
        super().__init__(self.detail)

    @classmethod
    def field(cls, status: int, field: str, message: str) -> A1111Error:
        return cls(status, {field: [message]})

    def response(self, body: Any = "") -> JsonResponse:
        content = {"error": ERROR_KINDS.get(self.status, "HTTPException"), "detail": self.detail, "body": body}
        response = JsonResponse({**content, "errors": self.errors, **self.extra}, status=self.status)
        if self.status == 401:
            response["WWW-Authenticate"] = 'Basic realm="HoffDesk Images"'
        return response


def _method_not_allowed(request: HttpRequest, allowed: list[str]) -> HttpResponse:
    error = A1111Error.field(405, "method", f"{request.method} is not allowed here; use {', '.join(allowed)}.")
    response = error.response()
    response["Allow"] = ", ".join(allowed)
    return response


def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """Any /sdapi/ path we do not answer, in AUTOMATIC1111's error shape."""
    return A1111Error.field(404, "path", f"{request.path} is not part of HoffDesk's AUTOMATIC1111 API.").response()


View = Callable[[HttpRequest, ApiToken], Any]


def _error_response(request: HttpRequest, exc: Exception) -> HttpResponse:
    """Any failure in AUTOMATIC1111's shape; a bug is still JSON, never the site's HTML page."""
    if isinstance(exc, TokenRefused):
        extra = {"error": "TooManyFailedAttempts"} if exc.status == 429 else {}
        return A1111Error(exc.status, {"Authorization": [exc.message]}, exc.message, **extra).response()
    if isinstance(exc, A1111Error):
        return exc.response(json_body(request) or "")
    logger.error("AUTOMATIC1111 API error on %s %s", request.method, request.path, exc_info=exc)
    return A1111Error.field(500, "request", "the server failed to answer; the error is in its log.").response()


def endpoint(*methods: str) -> Callable[[View], Callable[..., HttpResponseBase]]:
    """The token first (401/403), then the view; its dict or list is the JSON answer."""

    def decorate(view: View) -> Callable[..., HttpResponseBase]:
        @allow_methods(*methods, refuse=_method_not_allowed)
        @wraps(view)
        def wrapped(request: HttpRequest) -> HttpResponse:
            try:
                token = token_from_header(request, basic=True)
                return JsonResponse(view(request, token), safe=False)
            except Exception as exc:
                return _error_response(request, exc)

        return wrapped

    return decorate


def model_hash(name: str) -> str:
    """A stable 10-hex id for a profile where AUTOMATIC1111 shows a checkpoint's file hash."""
    return hashlib.sha256(name.encode()).hexdigest()[:10]


def _profile_name(value: Any, field: str) -> str:
    """A profile from a checkpoint title as clients send it: ``tiny-sd``, ``tiny-sd [hash]``,
    ``tiny-sd.safetensors``."""
    if not isinstance(value, str) or not value.strip():
        raise A1111Error.field(422, field, f"{field} must name a model; see GET /sdapi/v1/sd-models.")
    name = re.sub(r"\s*\[[0-9a-f]*\]$", "", value.strip())
    name = re.sub(r"\.(safetensors|ckpt)$", "", name.rsplit("/", 1)[-1])
    try:
        return get_profile(name).name
    except UnknownProfile as exc:
        raise A1111Error.field(422, field, str(exc.args[0])) from None


def _checkpoint(token: ApiToken) -> str:
    return token.default_model or settings.HOFFDESK_DEFAULT_MODEL


def _options(token: ApiToken) -> dict[str, Any]:
    name = _checkpoint(token)
    return {"sd_model_checkpoint": name, "sd_checkpoint_hash": model_hash(name), "samples_format": "png"}


@endpoint("GET")
def sd_models(request: HttpRequest, token: ApiToken) -> list[dict[str, Any]]:
    return [
        {
            "title": name,
            "model_name": name,
            "hash": model_hash(name),
            "sha256": hashlib.sha256(name.encode()).hexdigest(),
            "filename": name,  # never the server's own folder
            "config": None,
        }
        for name in all_profiles()
    ]


@endpoint("GET", "POST")
def options(request: HttpRequest, token: ApiToken) -> dict[str, Any]:
    """GET: the options clients read. POST: only ``sd_model_checkpoint`` is taken (this token's
    model); other options are accepted and ignored, since clients post back what they read."""
    if request.method == "POST":
        body = json_body(request)
        if body is None:
            raise A1111Error.field(422, "body", "send a JSON object of options.")
        if "sd_model_checkpoint" in body:
            token.default_model = _profile_name(body["sd_model_checkpoint"], "sd_model_checkpoint")
            token.save(update_fields=["default_model"])
    return _options(token)


@endpoint("GET")
def samplers(request: HttpRequest, token: ApiToken) -> list[dict[str, Any]]:
    """Every sampler name is accepted and recorded; each model runs its own (listed here)."""
    names = dict.fromkeys(p.sampler for p in all_profiles().values() if p.sampler)
    return [{"name": name, "aliases": [], "options": {}} for name in names]


def _upscaler_scale(name: str) -> int:
    """The scale an upscaler file's name states (``4x-UltraSharp``, ``RealESRGAN_x2plus``), else 4."""
    found = re.search(r"(?:^|[^0-9a-z])([1-8])x(?![0-9])|x([1-8])(?![0-9])", name.lower())
    return int(found.group(1) or found.group(2)) if found else UPSCALER_SCALE


@endpoint("GET")
def upscalers(request: HttpRequest, token: ApiToken) -> list[dict[str, Any]]:
    """Lanczos and the upscaler files the GPU workers report, in AUTOMATIC1111's shape; a file
    is named by its stem (what ``hr_upscaler`` takes), never by the server's path."""
    names = ["Lanczos", *upscalers_available()]
    return [
        {
            "name": name,
            "model_name": None if name == "Lanczos" else name,
            "model_path": None,
            "model_url": None,
            "scale": UPSCALER_SCALE if name == "Lanczos" else _upscaler_scale(name),
        }
        for name in names
    ]


def _current_run(token: ApiToken) -> GenerationRun | None:
    """The token's newest running run, else its oldest queued one (next to start)."""
    runs = GenerationRun.objects.filter(api_token=token)
    running = runs.filter(status=GenerationRun.Status.RUNNING).order_by("-started_at", "-id").first()
    return running or runs.filter(status=GenerationRun.Status.QUEUED).order_by("queued_at", "id").first()


@endpoint("GET")
def progress(request: HttpRequest, token: ApiToken) -> dict[str, Any]:
    run = _current_run(token)
    state: dict[str, Any] = {"skipped": False, "interrupted": False, "stopping_generation": False, "job": ""}
    if run is None:
        return {"progress": 0.0, "eta_relative": 0.0, "state": {**state, "job_count": 0}, "current_image": None,
                "textinfo": None}  # fmt: skip
    fraction = min(1.0, run.progress_step / run.progress_total) if run.progress_total else 0.0
    elapsed = run.elapsed_seconds or 0.0
    state.update(
        interrupted=run.cancel_requested,
        job=f"run {run.pk}",
        job_count=1,
        job_no=0,
        job_timestamp=run.queued_at.strftime("%Y%m%d%H%M%S"),
        sampling_step=run.progress_step,
        sampling_steps=run.progress_total,
    )
    if run.status == GenerationRun.Status.QUEUED:
        textinfo = f"Waiting... run {run.pk} is queued for the GPU."
    else:
        textinfo = f"run {run.pk}: step {run.progress_step} of {run.progress_total}"
    return {
        "progress": fraction,
        "eta_relative": elapsed / fraction - elapsed if fraction > 0 else 0.0,
        "state": state,
        "current_image": _current_image(request, run),
        "textinfo": textinfo,
    }


def _current_image(request: HttpRequest, run: GenerationRun) -> str | None:
    """The running batch's live previews as AUTOMATIC1111 sends its ``current_image``: a base64
    PNG (no data: prefix), null when there is none yet or the client asked ``skip_current_image``."""
    if request.GET.get("skip_current_image", "").lower() in ("true", "1"):
        return None
    png = preview_grid_png(run_id=run.pk)
    return base64.b64encode(png).decode("ascii") if png is not None else None


@endpoint("POST")
def interrupt(request: HttpRequest, token: ApiToken) -> dict[str, Any]:
    """Cancel the run ``progress`` reports: a running one stops at its next step."""
    run = _current_run(token)
    if run is not None:
        run_cancel(run=run)
    return {}


def _whole(body: dict[str, Any], field: str, default: int | None = None) -> int | None:
    value = body.get(field)
    if value is None:
        return default
    if not is_whole_number(value):
        raise A1111Error.field(422, field, f"{field} must be a whole number, not {value!r}.")
    return int(value)


def _number(body: dict[str, Any], field: str) -> float | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise A1111Error.field(422, field, f"{field} must be a number, not {value!r}.")
    return float(value)


def _text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise A1111Error.field(422, field, f"{field} must be a string.")
    return value


def _random_if_minus_one(value: int | None) -> int | None:
    return None if value is None or value == -1 else value


def _variation(body: dict[str, Any]) -> tuple[int | None, float | None]:
    """(variation seed, strength): subseed_strength 0 or absent is a plain run (subseed ignored);
    otherwise it must lie in our variation range."""
    strength = _number(body, "subseed_strength")
    subseed = _random_if_minus_one(_whole(body, "subseed"))
    if not strength:
        return None, None
    if not MIN_VARIATION_STRENGTH <= strength <= MAX_VARIATION_STRENGTH:
        raise A1111Error.field(
            422,
            "subseed_strength",
            f"subseed_strength must be 0 (off) or between {MIN_VARIATION_STRENGTH} and {MAX_VARIATION_STRENGTH}, "
            f"not {strength}.",
        )
    return subseed, strength


def _hires(body: dict[str, Any], model: str) -> dict[str, Any]:
    """AUTOMATIC1111's hires fix in run_submit's words; ``enable_hr`` false (or absent) ignores
    the other fields, as AUTOMATIC1111 does. Ranges are the service's (errors renamed back)."""
    enable = body.get("enable_hr")
    if enable is not None and not isinstance(enable, bool):
        raise A1111Error.field(422, "enable_hr", f"enable_hr must be true or false, not {enable!r}.")
    if not enable:
        return {}
    upscaler = body.get("hr_upscaler")
    if upscaler is not None and not isinstance(upscaler, str):
        raise A1111Error.field(422, "hr_upscaler", "hr_upscaler must be a string; see GET /sdapi/v1/upscalers.")
    if upscaler is None or upscaler.strip().lower() in PLAIN_RESIZE:
        upscaler = LANCZOS
    try:
        profile = get_profile(model)
    except UnknownProfile:
        return {}  # the service refuses the model, naming it
    steps = _whole(body, "steps", profile.default_steps)
    hires_steps = _whole(body, "hr_second_pass_steps", 0)
    denoise = _number(body, "denoising_strength")
    return {
        "hires_scale": _hr_scale(body, profile.native_width, profile.native_height),
        "hires_upscaler": upscaler,
        "hires_steps": steps if hires_steps == 0 else hires_steps,  # 0: as many as the first pass
        "hires_denoise": HR_DENOISING_STRENGTH if denoise is None else denoise,
    }


def _hr_scale(body: dict[str, Any], native_width: int, native_height: int) -> float:
    """``hr_scale``, or the scale that takes the first pass to ``hr_resize_x`` x ``hr_resize_y``
    (either may be 0: the other decides; both: the image covers both, it is not cropped)."""
    ratios = []
    for field, asked_edge, native in (("hr_resize_x", "width", native_width), ("hr_resize_y", "height", native_height)):
        target = _whole(body, field, 0)
        assert target is not None
        if target < 0:
            raise A1111Error.field(422, field, f"{field} must be 0 (use hr_scale) or a size in pixels, not {target}.")
        edge = _whole(body, asked_edge) or native
        if target:
            ratios.append(target / edge)
    if ratios:
        return max(ratios)
    scale = _number(body, "hr_scale")
    return HR_SCALE if scale is None else scale


def _txt2img_fields(body: dict[str, Any], token: ApiToken) -> dict[str, Any]:
    """The request in run_submit's words (ValidationError-free types; ranges are the service's)."""
    batch_size = _whole(body, "batch_size", 1)
    n_iter = _whole(body, "n_iter", 1)
    assert batch_size is not None and n_iter is not None
    for field, value in (("batch_size", batch_size), ("n_iter", n_iter)):
        if value < 1:
            raise A1111Error.field(422, field, f"{field} must be at least 1, not {value}.")
    if batch_size * n_iter > MAX_IMAGES:
        raise A1111Error.field(
            422, "batch_size", f"batch_size x n_iter must be at most {MAX_IMAGES}, not {batch_size * n_iter}."
        )
    overrides = body.get("override_settings") or {}
    if not isinstance(overrides, dict):
        raise A1111Error.field(422, "override_settings", "override_settings must be an object.")
    model = None
    if overrides.get("sd_model_checkpoint") is not None:
        model = _profile_name(overrides["sd_model_checkpoint"], "override_settings.sd_model_checkpoint")
    variation_seed, variation_strength = _variation(body)
    for field in ("sampler_name", "scheduler"):
        if body.get(field) is not None and not isinstance(body[field], str):
            raise A1111Error.field(422, field, f"{field} must be a string.")
    model = model or _checkpoint(token)
    return {
        **_hires(body, model),
        "prompt": _text(body, "prompt"),
        "negative_prompt": _text(body, "negative_prompt"),
        "model": model,
        "seed": _random_if_minus_one(_whole(body, "seed")),
        "count": batch_size * n_iter,
        "width": _whole(body, "width"),
        "height": _whole(body, "height"),
        "steps": _whole(body, "steps"),
        "guidance": _number(body, "cfg_scale"),
        "variation_seed": variation_seed,
        "variation_strength": variation_strength,
    }


def _infotext(png: bytes) -> str:
    """The ``parameters`` text chunk the worker wrote into the PNG, as AUTOMATIC1111 writes it."""
    with Image.open(io.BytesIO(png)) as image:
        return str(image.info.get("parameters", ""))


def _info(run: GenerationRun, body: dict[str, Any], pngs: list[bytes]) -> dict[str, Any]:
    engine = get_profile(run.profile_to_run)
    asked = body.get("sampler_name") or ""
    note = f"{engine.name} always runs its own sampler ({engine.sampler})"
    subseeds = run.variation_seeds or [-1] * run.count
    extra: dict[str, Any] = {"Sampler": f"{asked} was ignored: {note}" if asked else note}
    if run.has_hires:  # AUTOMATIC1111's keys, as in the PNG's parameters
        extra.update(
            {
                "Hires upscale": run.hires_scale,
                "Hires steps": run.hires_steps,
                "Hires upscaler": "Lanczos" if run.hires_upscaler == LANCZOS else run.hires_upscaler,
            }
        )
    return {
        "prompt": run.prompt,
        "all_prompts": [run.prompt] * run.count,
        "negative_prompt": run.negative_prompt,
        "all_negative_prompts": [run.negative_prompt] * run.count,
        "seed": run.base_seed,
        "all_seeds": run.seeds,
        "subseed": subseeds[0],
        "all_subseeds": subseeds,
        "subseed_strength": run.variation_strength,
        "width": run.width,
        "height": run.height,
        "sampler_name": engine.sampler,
        "cfg_scale": run.guidance,
        "steps": run.steps,
        "denoising_strength": run.hires_denoise,  # the hires pass's; null without one
        "batch_size": run.count,
        "restore_faces": False,
        "sd_model_name": run.model_profile,
        "sd_model_hash": model_hash(run.model_profile),
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "styles": [],
        "job_timestamp": run.queued_at.strftime("%Y%m%d%H%M%S"),
        "clip_skip": 1,
        "index_of_first_image": 0,
        "infotexts": [_infotext(png) for png in pngs],
        "extra_generation_params": extra,
        "version": "hoffdesk-images",
        "hoffdesk": {"run": run.pk, "engine_profile": run.profile_to_run, "status": run.status},
    }


def _txt2img_submit(request: HttpRequest) -> tuple[int, dict[str, Any]]:
    """The token, the body and the queued run (its id); then this thread lets go of its
    database connection, since the wait that follows may be minutes."""
    token = token_from_header(request, basic=True)
    body = json_body(request)
    if body is None:
        raise A1111Error.field(422, "body", "send a JSON object.")
    recorded: dict[str, Any] = {f: body[f] for f in ("sampler_name", "scheduler", "batch_size", "n_iter") if f in body}
    try:
        run = run_submit(
            article=None,
            requested_by=token.user,
            requested_via=RequestedVia.A1111,
            api_token=token,
            client_fields=recorded,
            **_txt2img_fields(body, token),
        )
    except QueueLimitReached as exc:
        raise A1111Error(429, {"request": exc.messages}) from None
    except ValidationError as exc:
        errors = {RENAME.get(f, f): list(m) for f, m in exc.message_dict.items()}
        raise A1111Error(422, errors) from None
    finally:
        release_connection()
    return run.pk, body


def _txt2img_answer(run_id: int, body: dict[str, Any], finished: bool) -> dict[str, Any]:
    run = GenerationRun.objects.get(pk=run_id)
    if not finished:
        raise A1111Error(
            504,
            {"request": [f"run {run.pk} is still {run.status} after {wait_seconds():g} s."]},
            f"request: run {run.pk} is still {run.status} after {wait_seconds():g} s; it goes on, and its images "
            f"will be in the Inbox (GET /api/v1/runs/{run.pk}).",
            run_id=run.pk,
        )
    if run.status == GenerationRun.Status.FAILED:
        raise A1111Error(500, {"request": [f"run {run.pk} failed: {run.error}"]}, run_id=run.pk)
    # Cancelled (interrupt): like AUTOMATIC1111, answer with what there is, here nothing.
    pngs = [png for _candidate, png in run_pngs(run)]
    return {
        "images": [base64.b64encode(png).decode() for png in pngs],
        "parameters": body,
        "info": json.dumps(_info(run, body, pngs)),
    }


@allow_methods("POST", refuse=_method_not_allowed)
async def txt2img(request: HttpRequest) -> HttpResponseBase:
    """Queue the run, wait for it without holding a thread (``run_wait``), answer its images."""
    try:
        run_id, body = await sync_to_async(_txt2img_submit)(request)
        finished = await run_wait(run_id, wait_seconds())
        return JsonResponse(await sync_to_async(_txt2img_answer)(run_id, body, finished))
    except Exception as exc:
        return _error_response(request, exc)
