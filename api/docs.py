"""The interactive docs page, with Swagger UI served from the django-ninja package on this
server (never a CDN; ninja itself falls back to one when it is not an installed app)."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ninja
from django.http import FileResponse, HttpRequest, HttpResponse
from django.urls import reverse
from ninja.openapi.docs import DocsBase

from api.errors import ApiError, json_error

if TYPE_CHECKING:
    from ninja import NinjaAPI

ASSETS_DIR = Path(ninja.__file__).parent / "static" / "ninja"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-init.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}


class LocalSwagger(DocsBase):
    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs: Any) -> HttpResponse:
        settings = {"url": self.get_openapi_url(api, kwargs), "layout": "BaseLayout", "deepLinking": True}

        def asset(name: str) -> str:
            return escape(reverse("api:docs_asset", args=[name]))

        page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(api.title)}</title>
<link rel="stylesheet" href="{asset("swagger-ui.css")}">
<link rel="icon" href="{asset("favicon.png")}">
</head>
<body>
<script type="application/json" id="swagger-settings">{escape(json.dumps(settings), quote=False)}</script>
<div id="swagger-ui"></div>
<script src="{asset("swagger-ui-bundle.js")}"></script>
<script src="{asset("swagger-ui-init.js")}"></script>
</body>
</html>
"""
        return HttpResponse(page)


def docs_asset(request: HttpRequest, name: str) -> HttpResponse | FileResponse:
    """One of Swagger UI's files, from the installed django-ninja (an allowlist, no paths)."""
    if name not in ASSETS:
        return json_error(ApiError.field(404, "path", f"no docs asset {name!r}."))
    response = FileResponse((ASSETS_DIR / name).open("rb"), content_type=ASSETS[name])
    response["Cache-Control"] = "public, max-age=86400"
    return response
