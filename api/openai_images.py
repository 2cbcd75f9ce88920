"""The OpenAI Images API (``POST /v1/images/generations``, ``GET /v1/models``) on top of our queue.

Open WebUI's OpenAI engine, the official ``openai`` package and many scripts speak it. Every call
needs ``Authorization: Bearer TOKEN`` (an API token). A generation queues a normal run with no
article (it lands in the Inbox) and answers once it succeeded, waiting up to
``HOFFDESK_IMAGE_API_WAIT`` seconds. Errors have OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``, and say ``x-should-retry: false``: the
official client would otherwise send the same request again on a 429 or 5xx and queue a second
run. See docs/integrations.md.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.urls import reverse

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
from generation.models import Candidate, GenerationRun, RequestedVia
from generation.profiles import UnknownProfile, all_profiles, get_profile
from generation.services import QueueLimitReached, run_submit
from generation.validation import MAX_IMAGES

logger = logging.getLogger(__name__)

# A ``url`` answer links to the PNG with no login for HOFFDESK_IMAGE_URL_SECONDS. The link signs
# the candidate and the token that asked ("v2": links that signed only the candidate are void).
URL_SALT = "api.openai_images.url.v2"
SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
# Accepted and recorded on the run, never used (we have one way of drawing).
RECORDED = ("user", "quality", "style", "background", "moderation", "output_compression")
# ``steps`` is ours, not OpenAI's (send it with Open WebUI's IMAGES_OPENAI_API_PARAMS or the
# client's extra_body); the others are OpenAI's.
KNOWN = {"prompt", "model", "n", "size", "response_format", "output_format", "stream", "steps", *RECORDED}
RENAME = {"width": "size", "height": "size", "count": "n"}

ERROR_TYPES = {
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "insufficient_permissions"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", "run_failed"),
    504: ("server_error", "timeout"),
}


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        kind, default_code = ERROR_TYPES.get(status, ("invalid_request_error", "invalid_value"))
        self.type = kind
        self.code = code or default_code

    def response(self) -> JsonResponse:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        response = JsonResponse({"error": error}, status=self.status)
        response["x-should-retry"] = "false"
        if self.status == 401:
            response["WWW-Authenticate"] = "Bearer"
        return response


def _method_not_allowed(request: HttpRequest, allowed: list[str]) -> HttpResponse:
    response = OpenAIError(405, f"{request.method} is not allowed here; use {', '.join(allowed)}.").response()
    response["Allow"] = ", ".join(allowed)
    return response


def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """Any /v1/ path we do not answer, in OpenAI's error shape."""
    message = f"{request.path} is not part of HoffDesk's OpenAI-compatible API (images/generations, models)."
    return OpenAIError(404, message, code="unknown_url").response()


View = Callable[[HttpRequest, ApiToken], dict[str, Any]]


def _error_response(request: HttpRequest, exc: Exception) -> HttpResponse:
    """Any failure in OpenAI's shape; a bug is still JSON, never the site's HTML error page."""
    if isinstance(exc, TokenRefused):
        return OpenAIError(exc.status, exc.message).response()
    if isinstance(exc, OpenAIError):
        return exc.response()
    logger.error("OpenAI images API error on %s %s", request.method, request.path, exc_info=exc)
    failed = "The server failed to answer; the error is in its log."
    return OpenAIError(500, failed, code="server_error").response()


def endpoint(*methods: str) -> Callable[[View], Callable[..., HttpResponseBase]]:
    def decorate(view: View) -> Callable[..., HttpResponseBase]:
        @allow_methods(*methods, refuse=_method_not_allowed)
        @wraps(view)
        def wrapped(request: HttpRequest) -> HttpResponse:
            try:
                return JsonResponse(view(request, token_from_header(request, basic=False)))
            except Exception as exc:
                return _error_response(request, exc)

        return wrapped

    return decorate


@endpoint("GET")
def models(request: HttpRequest, token: ApiToken) -> dict[str, Any]:
    """Every model profile, as OpenAI lists models."""
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "hoffdesk"} for name in all_profiles()]
    return {"object": "list", "data": data}


def _size(value: Any) -> tuple[int | None, int | None]:
    """``WxH``; ``auto`` or nothing: the model's native size."""
    if value is None or value == "auto":
        return None, None
    match = SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise OpenAIError(400, f"size must be 'auto' or WIDTHxHEIGHT such as '512x512', not {value!r}.", "size")
    return int(match[1]), int(match[2])


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    """The request in run_submit's words; anything a client may not send is a 400 naming it."""
    for field in body:
        if field not in KNOWN:
            raise OpenAIError(400, f"Unrecognized request argument supplied: {field}", field, "unknown_parameter")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise OpenAIError(400, "prompt is required: a non-empty string.", "prompt")
    model = body.get("model")
    if model is not None:
        try:
            model = get_profile(str(model)).name
        except UnknownProfile as exc:
            raise OpenAIError(404, str(exc.args[0]), "model", "model_not_found") from None
    n = body.get("n", 1)
    if n is None:
        n = 1
    if not is_whole_number(n) or not 1 <= n <= MAX_IMAGES:
        raise OpenAIError(400, f"n must be a whole number from 1 to {MAX_IMAGES}, not {n!r}.", "n")
    steps = body.get("steps")
    if steps is not None and not is_whole_number(steps):
        raise OpenAIError(400, f"steps must be a whole number, not {steps!r}.", "steps")
    if body.get("response_format", "b64_json") not in ("b64_json", "url", None):
        raise OpenAIError(400, "response_format must be 'b64_json' or 'url'.", "response_format")
    if body.get("output_format") not in (None, "png"):
        raise OpenAIError(400, "output_format must be 'png': candidates are PNG files.", "output_format")
    if body.get("stream"):
        raise OpenAIError(400, "stream is not supported: the answer comes once the run succeeded.", "stream")
    width, height = _size(body.get("size"))
    return {"prompt": prompt, "model": model, "count": n, "width": width, "height": height, "steps": steps}


def image_url(request: HttpRequest, candidate: Candidate, *, token: ApiToken) -> str:
    """A link to the PNG that works without a login while ``token`` is good, for at most
    ``HOFFDESK_IMAGE_URL_SECONDS``: revoking the token (or disabling its user) ends it too."""
    signed = signing.TimestampSigner(salt=URL_SALT).sign(f"{candidate.pk}-{token.pk}")
    return request.build_absolute_uri(reverse("api:openai_image_file", args=[signed]))


def _generation_submit(request: HttpRequest) -> tuple[int, dict[str, Any]]:
    """The token, the body and the queued run (its id); then this thread lets go of its
    database connection, since the wait that follows may be minutes."""
    token = token_from_header(request, basic=False)
    body = json_body(request)
    if body is None:
        raise OpenAIError(400, "The body must be a JSON object.")
    fields = _fields(body)
    recorded = {field: body[field] for field in RECORDED if body.get(field) is not None}
    try:
        run = run_submit(
            article=None,
            requested_by=token.user,
            requested_via=RequestedVia.OPENAI,
            api_token=token,
            client_fields=recorded,
            **fields,
        )
    except QueueLimitReached as exc:
        raise OpenAIError(429, " ".join(exc.messages)) from None
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        param = RENAME.get(field, field)
        raise OpenAIError(400, f"{param}: {' '.join(messages)}", None if param == "__all__" else param) from None
    finally:
        release_connection()
    return run.pk, body


def _generation_answer(request: HttpRequest, run_id: int, body: dict[str, Any], finished: bool) -> dict[str, Any]:
    run = GenerationRun.objects.select_related("api_token").get(pk=run_id)
    if not finished:
        waited = wait_seconds()
        message = (
            f"run {run.pk} is still {run.status} after {waited:g} s; it goes on, and its images will be in the "
            f"Inbox (GET /api/v1/runs/{run.pk})."
        )
        raise OpenAIError(504, message)
    if run.status != GenerationRun.Status.SUCCEEDED:
        raise OpenAIError(500, f"run {run.pk} {run.status}: {run.error or 'no images'}.")
    as_url = body.get("response_format") == "url"
    token = run.api_token
    assert token is not None  # set by _generation_submit
    data = [
        {"url": image_url(request, c, token=token)} if as_url else {"b64_json": base64.b64encode(png).decode()}
        for c, png in run_pngs(run)
    ]
    return {
        "created": int(time.time()),
        "data": [{**item, "revised_prompt": run.prompt} for item in data],
        "output_format": "png",
        "size": f"{run.width}x{run.height}",
    }


@allow_methods("POST", refuse=_method_not_allowed)
async def image_generations(request: HttpRequest) -> HttpResponseBase:
    """Queue the run, wait for it without holding a thread (``run_wait``), answer its images."""
    try:
        run_id, body = await sync_to_async(_generation_submit)(request)
        finished = await run_wait(run_id, wait_seconds())
        return JsonResponse(await sync_to_async(_generation_answer)(request, run_id, body, finished))
    except Exception as exc:
        return _error_response(request, exc)


@allow_methods("GET", refuse=_method_not_allowed)
def image_file(request: HttpRequest, signed: str) -> HttpResponseBase:
    """The PNG behind a ``url`` answer: no token is sent, the link's signature stands for the one
    that asked, so that token must still be active and its user too."""
    try:
        value = signing.TimestampSigner(salt=URL_SALT).unsign(signed, max_age=settings.HOFFDESK_IMAGE_URL_SECONDS)
    except signing.SignatureExpired:
        return OpenAIError(403, "This image link has expired; ask for the image again.", code="expired").response()
    except signing.BadSignature:
        return not_found(request)
    candidate_pk, _, token_pk = value.partition("-")
    token = ApiToken.objects.select_related("user").filter(pk=int(token_pk)).first()
    if token is None or token.is_revoked:
        message = "The API token this image link was made for has been revoked."
        return OpenAIError(403, message, code="token_revoked").response()
    if not token.user.is_active:
        message = "The user account this image link was made for is disabled."
        return OpenAIError(403, message, code="user_inactive").response()
    candidate = Candidate.objects.filter(pk=int(candidate_pk)).first()
    if candidate is None:
        return not_found(request)
    response = FileResponse(candidate.image.open("rb"), content_type="image/png")
    # Private and short: a cache must not keep serving it after the token is revoked.
    response["Cache-Control"] = "private, max-age=60"
    return response
