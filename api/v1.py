"""The v1 API: one NinjaAPI with bearer-token auth on every operation, JSON errors, and the
routers of ``api.routers``. Its URLs are built once here (ninja refuses a second build)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver
from ninja import NinjaAPI

from api.auth import BearerToken
from api.docs import LocalSwagger
from api.errors import install_handlers, json_method_not_allowed, not_found
from api.routers import articles, candidates, runs

api = NinjaAPI(
    title="HoffDesk Images API",
    version="1",
    description=(
        "Articles, generation runs, review and publishing for the HoffDesk blog's hero images. "
        "Every call needs `Authorization: Bearer TOKEN` (`manage.py create_api_token USERNAME`). "
        'Every error is JSON: `{"detail": "field: message", "errors": {field: [messages]}}`. '
        "See docs/api.md."
    ),
    auth=BearerToken(),
    docs=LocalSwagger(),
    urls_namespace="api:api-v1",  # included under the "api" namespace (api/urls.py)
)
install_handlers(api)
api.add_router("", articles.router)
api.add_router("", runs.router)
api.add_router("", candidates.router)


def _urls() -> list[URLPattern | URLResolver]:
    """ninja's patterns, each answering a wrong method in JSON. Its root view (kept: the schema
    reverses ``api-root`` for its base path) is an HTML 404 page at /api/v1/ itself: ours is JSON."""
    patterns, _app_name, _namespace = api.urls
    for pattern in patterns:
        if isinstance(pattern, URLPattern):
            if pattern.name == "api-root":
                pattern.callback = not_found
            else:
                pattern.callback = json_method_not_allowed(pattern.callback)
    return patterns


urls = (_urls(), "ninja", "api-v1")
