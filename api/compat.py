"""What the AUTOMATIC1111 and OpenAI image APIs share: the token (Basic or Bearer), the JSON body,
waiting for a run, and the candidates' PNG bytes.

These APIs answer the way their clients expect, so they are plain Django views rather than
django-ninja operations (whose errors have our own shape). A request queues a normal run through
``generation.services.run_submit`` and then only polls the database: the run is on the queue on
its own, so a client that hangs up leaves it to finish and land in the Inbox.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from api.auth import BearerToken
from api.errors import ApiError
from api.models import ApiToken
from generation.models import Candidate, GenerationRun

# Seconds between two looks at a waited-for run: short next to a generation, cheap for SQLite.
WAIT_POLL_SECONDS = 0.25


class TokenRefused(Exception):
    """No usable token: ``status`` 401 (missing, unknown, revoked) or 403 (may not act)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def token_from_header(request: HttpRequest, *, basic: bool) -> ApiToken:
    """The API token in ``Authorization``: ``Bearer TOKEN``, or with ``basic`` also HTTP Basic whose
    password is the token (``anything:TOKEN``, what AUTOMATIC1111 clients send)."""
    header = request.headers.get("Authorization", "").strip()
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if not header:
        how = "HTTP Basic with the API token as password, or `Bearer TOKEN`" if basic else "`Bearer TOKEN`"
        raise TokenRefused(401, f"Authorization: send {how} (make one with `manage.py create_api_token USERNAME`).")
    if scheme.lower() == "basic" and basic:
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise TokenRefused(401, "Authorization: the Basic credentials are not base64 of user:password.") from None
        value = password or user
    elif scheme.lower() != "bearer" or not value:
        raise TokenRefused(401, "Authorization: the header must read `Bearer TOKEN`.")
    try:
        token: ApiToken = BearerToken().authenticate(request, value)
    except ApiError as exc:
        raise TokenRefused(exc.status, exc.detail) from None
    return token


def json_body(request: HttpRequest) -> dict[str, Any] | None:
    """The request body as a JSON object; None when it is not one."""
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def is_whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def wait_seconds() -> float:
    return float(settings.HOFFDESK_IMAGE_API_WAIT)


def run_wait(run: GenerationRun, timeout: float) -> bool:
    """Poll until the run has finished (True) or ``timeout`` seconds have passed (False).

    Nothing here drives the run: if the client goes away, the worker finishes it all the same."""
    deadline = time.monotonic() + timeout
    while True:
        run.refresh_from_db()
        if run.is_finished:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(WAIT_POLL_SECONDS)


def candidate_png(candidate: Candidate) -> bytes:
    with candidate.image.open("rb") as fh:
        data: bytes = fh.read()
    return data


def run_pngs(run: GenerationRun) -> list[tuple[Candidate, bytes]]:
    """Each candidate of the run with its PNG, in order."""
    return [(c, candidate_png(c)) for c in run.candidates.order_by("index")]


def allow_methods(
    *methods: str, refuse: Callable[[HttpRequest, list[str]], HttpResponse]
) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """CSRF-exempt (token auth, no cookies) and only ``methods``; any other is ``refuse``-d."""

    def decorate(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @csrf_exempt
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                return refuse(request, list(methods))
            return view(request, *args, **kwargs)

        return wrapped

    return decorate
