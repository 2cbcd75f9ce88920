from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.static import serve

from hoffdesk_images import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("", include("api.urls")),  # /api/v1/, /sdapi/v1/, /v1/ (image APIs), each with JSON 404s
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("gallery.urls")),
]

if settings.PUBLISH_IS_LOCAL and settings.PUBLISH_BASE_URL == "/published/":
    # The offline default: published renditions are public, like the CDN they stand in for.
    urlpatterns.append(re_path(r"^published/(?P<path>.+)$", serve, {"document_root": settings.PUBLISH_DIR}))
