from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from generation.models import Candidate, GenerationRun, StylePreset


@admin.register(StylePreset)
class StylePresetAdmin(admin.ModelAdmin):
    list_display = ["name", "model_profile", "image_style", "output_size", "steps", "guidance", "position"]
    list_filter = ["image_style", "model_profile"]
    prepopulated_fields = {"slug": ["name"]}


class CandidateInline(admin.TabularInline):
    model = Candidate
    extra = 0
    fields = ("index", "seed", "image", "width", "height", "sha256", "review_status")
    readonly_fields = fields
    can_delete = False


@admin.register(GenerationRun)
class GenerationRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "article",
        "model_profile",
        "engine_profile",
        "status",
        "progress_step",
        "progress_total",
        "attempts",
        "queued_at",
    ]
    list_filter = ["status", "model_profile"]
    readonly_fields = [f.name for f in GenerationRun._meta.fields]
    inlines = [CandidateInline]
    search_fields = ["prompt", "article__title", "article__slug"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are made through the dashboard, the command line or the API
