"""Articles: what the blog publishes and what needs images."""

from __future__ import annotations

from django.db import models
from django.urls import reverse

from generation.models import ContentType


class Article(models.Model):
    slug = models.SlugField(max_length=200, unique=True)
    title = models.CharField(max_length=300)
    summary = models.TextField(blank=True)
    content_type = models.CharField(max_length=20, choices=ContentType.choices, default=ContentType.TECHNICAL)
    tone = models.CharField(max_length=100, blank=True)
    series = models.CharField(max_length=200, blank=True)
    hero_candidate = models.ForeignKey(
        "generation.Candidate", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    published_urls = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "slug"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("gallery:article_detail", args=[self.slug])
