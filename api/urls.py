"""Everything under /api/: the v1 API, its docs assets, and a JSON 404 for any other path."""

from __future__ import annotations

from django.urls import path, re_path

from api import docs, errors, v1

# Namespace "api": the v1 operations reverse as ``api:api-v1:<url_name>``.
app_name = "api"
urlpatterns = [
    path("v1/docs/assets/<str:name>", docs.docs_asset, name="docs_asset"),
    path("v1/", v1.urls),
    re_path(r"", errors.not_found),
]
