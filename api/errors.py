"""Every error under /api/ is JSON: ``{"detail": "...", "errors": {field: [messages]}}``.

``detail`` is one sentence that starts with the field it is about (``title: ...``); ``errors``
holds every problem by field (empty when no single field is to blame). Views raise ``ApiError``;
the handlers here turn it, request-validation errors, Django's ``ValidationError`` from the
services, unknown paths and wrong methods into that shape.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from functools import wraps
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotAllowed
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as RequestValidationError

logger = logging.getLogger(__name__)

GENERAL = "request"  # the ``errors`` key of a problem no single field is to blame for


class ApiError(Exception):
    """An answer other than success: status, a detail naming the field, every problem by field."""

    def __init__(self, status: int, detail: str, errors: Mapping[str, Iterable[str]] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = {field: list(messages) for field, messages in (errors or {}).items()}
        self.headers: dict[str, str] = {}

    @classmethod
    def field(cls, status: int, field: str, message: str) -> ApiError:
        """One problem with one field: ``field: message``."""
        return cls(status, f"{field}: {message}", {field: [message]})

    @classmethod
    def from_messages(cls, status: int, errors: Mapping[str, Iterable[str]]) -> ApiError:
        """Many problems by field; the detail lists them all, each after its field's name."""
        errors = {field: list(messages) for field, messages in errors.items()}
        detail = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items())
        return cls(status, detail or "The request is invalid.", errors)

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, "errors": self.errors}


def from_validation_error(
    exc: DjangoValidationError, *, status: int = 400, rename: Mapping[str, str] | None = None
) -> ApiError:
    """A service's ``ValidationError`` (field -> messages) in the API's words.

    ``rename`` maps a service's field name to the request field it came from; errors that name no
    field are reported under ``request``.
    """
    rename = rename or {}
    if hasattr(exc, "error_dict"):
        by_field = exc.message_dict
    else:
        by_field = {NON_FIELD_ERRORS: exc.messages}
    errors = {(GENERAL if f == NON_FIELD_ERRORS else rename.get(f, f)): list(m) for f, m in by_field.items()}
    return ApiError.from_messages(status, errors)


def json_error(error: ApiError) -> HttpResponse:
    response = HttpResponse(json.dumps(error.body()), status=error.status, content_type="application/json")
    for name, value in error.headers.items():
        response[name] = value
    return response


def _field_of(loc: Iterable[Any]) -> str:
    """``("body", "payload", "title")`` -> ``title``; ``("query", "q")`` -> ``q``."""
    parts = [str(part) for part in loc]
    if parts and parts[0] == "body":
        parts = parts[2:] if len(parts) > 2 else ["body"]
    elif parts and parts[0] in ("query", "path", "header", "cookie", "form", "file"):
        parts = parts[1:]
    return ".".join(parts) or GENERAL


def _request_invalid(request: HttpRequest, exc: RequestValidationError) -> HttpResponse:
    errors: dict[str, list[str]] = {}
    for problem in exc.errors:
        errors.setdefault(_field_of(problem.get("loc", ())), []).append(str(problem.get("msg", "invalid")))
    return json_error(ApiError.from_messages(400, errors))


def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return json_error(exc)


def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if exc.status_code == 400:  # ninja's "Cannot parse request body"
        return json_error(ApiError.field(400, "body", f"{exc} (send a JSON object)."))
    return json_error(ApiError(exc.status_code, str(exc)))


def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    error = ApiError.field(401, "Authorization", "send the header `Authorization: Bearer TOKEN`.")
    error.headers["WWW-Authenticate"] = "Bearer"
    return json_error(error)


def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return json_error(ApiError.field(404, "path", f"nothing at {request.path}."))


def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("API error on %s %s", request.method, request.path)
    return json_error(ApiError(500, "request: the server failed to answer; the error is in its log."))


HANDLERS: dict[type[Exception], Callable[..., HttpResponse]] = {
    ApiError: _api_error,
    RequestValidationError: _request_invalid,
    HttpError: _http_error,
    AuthenticationError: _unauthenticated,
    Http404: _not_found,
    Exception: _unexpected,
}


def install_handlers(api: NinjaAPI) -> None:
    for exc_class, handler in HANDLERS.items():
        api.add_exception_handler(exc_class, handler)


@csrf_exempt  # a POST to a wrong path is a 404 like any other, not the CSRF middleware's HTML 403
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """Any path under /api/ that no route matches, including malformed ids (``/runs/abc``)."""
    return json_error(ApiError.field(404, "path", f"no API route matches {request.path}; see /api/v1/docs."))


View = Callable[..., HttpResponseBase]


def json_method_not_allowed(view: View) -> View:
    """ninja answers a wrong method with an HTML-less, JSON-less 405: say it in JSON, keep Allow."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = response["Allow"]
            error = ApiError.field(405, "method", f"{request.method} is not allowed here; use {allowed}.")
            error.headers["Allow"] = allowed
            return json_error(error)
        return response

    return wrapped
