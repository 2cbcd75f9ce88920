"""Admin for the editorial side: articles, and the prompt library, whose preview renders a
template against an article (so it lives here, not in ``generation``, which knows no articles)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Max
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from gallery.models import Article
from generation.models import PromptTemplate, StylePreset
from generation.profiles import get_profile
from generation.prompts import PLACEHOLDERS, prompt_length_warning, prompt_render, prompt_values, template_problems
from generation.services import preset_for_article


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    list_display = ["title", "slug", "content_type", "tone", "series", "updated_at"]
    list_filter = ["content_type"]
    search_fields = ["title", "slug", "summary"]
    prepopulated_fields = {"slug": ["title"]}
    raw_id_fields = ["hero_candidate"]


class PromptTemplateForm(forms.ModelForm):
    class Meta:
        model = PromptTemplate
        fields = ["name", "text"]
        help_texts = {
            "text": "Placeholders: " + ", ".join("{" + p + "}" for p in PLACEHOLDERS) + ". Write {{ for a brace."
        }

    def clean_text(self) -> str:
        text: str = self.cleaned_data["text"]
        problems = template_problems(text)
        if problems:
            raise forms.ValidationError(problems)
        return text


@admin.register(PromptTemplate)
class PromptTemplateAdmin(admin.ModelAdmin):
    """The prompt library. Saving a changed template makes its next version; an old version is
    never edited, so the runs that used it keep pointing at the text they used."""

    form = PromptTemplateForm
    list_display = ["name", "version", "created_at"]
    list_filter = ["name"]
    readonly_fields = ["version", "created_at"]
    change_form_template = "admin/generation/prompttemplate/change_form.html"

    def save_model(self, request: HttpRequest, obj: PromptTemplate, form: Any, change: bool) -> None:
        newest = PromptTemplate.objects.filter(name=obj.name).aggregate(v=Max("version"))["v"] or 0
        if change:
            if not form.has_changed():
                return
            obj.pk = None  # a new row: the old version stays as it was
            obj._state.adding = True
            messages.info(request, f"Saved as version {newest + 1}; version {form.instance.version} is kept unchanged.")
        obj.version = newest + 1
        obj.save()

    def get_urls(self) -> list[URLPattern]:
        preview = path(
            "<int:pk>/preview/",
            self.admin_site.admin_view(self.preview_view),
            name="generation_prompttemplate_preview",
        )
        return [preview, *super().get_urls()]

    def preview_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The template rendered against a chosen article and preset, with the length warning
        for the preset's model."""
        template = get_object_or_404(PromptTemplate, pk=pk)
        if not self.has_view_permission(request, template):
            return HttpResponse(status=403)
        articles = Article.objects.order_by("-updated_at")[:200]
        presets = StylePreset.objects.all()
        article = Article.objects.filter(slug=request.GET.get("article", "")).first() or articles.first()
        preset = presets.filter(slug=request.GET.get("preset", "")).first()
        if preset is None and article is not None:
            preset = preset_for_article(article=article)
        rendered = warning = ""
        model = ""
        if article is not None:
            rendered = prompt_render(template.text, prompt_values(article=article, preset=preset))
            model = (preset.model_profile if preset else "") or settings.HOFFDESK_DEFAULT_MODEL
            warning = prompt_length_warning(rendered, get_profile(model))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Preview of {template}",
            "template_row": template,
            "articles": articles,
            "presets": presets,
            "article": article,
            "preset": preset,
            "rendered": rendered,
            "warning": warning,
            "model": model,
        }
        return TemplateResponse(request, "admin/generation/prompttemplate/preview.html", context)
