from __future__ import annotations

from django.contrib import admin

from gallery.models import Article


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    list_display = ["title", "slug", "content_type", "tone", "series", "updated_at"]
    list_filter = ["content_type"]
    search_fields = ["title", "slug", "summary"]
    prepopulated_fields = {"slug": ["title"]}
    raw_id_fields = ["hero_candidate"]
