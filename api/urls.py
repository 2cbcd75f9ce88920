"""Every API route: our v1 API under /api/, AUTOMATIC1111's under /sdapi/v1/ and OpenAI's Images API
under /v1/, each with a JSON 404 in its own shape for any other path below it.

Included at the site root (hoffdesk_images/urls.py) under the namespace "api": the v1 operations
reverse as ``api:api-v1:<url_name>``.
"""

from __future__ import annotations

from django.urls import path, re_path

from api import a1111, docs, errors, openai_images, v1

app_name = "api"
urlpatterns = [
    path("api/v1/docs/assets/<str:name>", docs.docs_asset, name="docs_asset"),
    path("api/v1/", v1.urls),
    re_path(r"^api/", errors.not_found),
    # AUTOMATIC1111 (Open WebUI's default image engine, SillyTavern, scripts)
    path("sdapi/v1/txt2img", a1111.txt2img, name="a1111_txt2img"),
    path("sdapi/v1/sd-models", a1111.sd_models, name="a1111_sd_models"),
    path("sdapi/v1/options", a1111.options, name="a1111_options"),
    path("sdapi/v1/progress", a1111.progress, name="a1111_progress"),
    path("sdapi/v1/interrupt", a1111.interrupt, name="a1111_interrupt"),
    path("sdapi/v1/samplers", a1111.samplers, name="a1111_samplers"),
    path("sdapi/v1/upscalers", a1111.upscalers, name="a1111_upscalers"),
    re_path(r"^sdapi/", a1111.not_found),
    # OpenAI Images API (Open WebUI's OpenAI engine, the openai package)
    path("v1/images/generations", openai_images.image_generations, name="openai_image_generations"),
    path("v1/images/files/<str:signed>.png", openai_images.image_file, name="openai_image_file"),
    path("v1/models", openai_images.models, name="openai_models"),
    re_path(r"^v1/", openai_images.not_found),
]
