"""Template helpers of the dashboard's article pages (``gallery.views_articles``)."""

from __future__ import annotations

from typing import Any

from django import template
from django.db.models import Count

from gallery.forms import ArticleImportForm
from generation.models import Candidate

register = template.Library()


@register.simple_tag
def article_import_form() -> ArticleImportForm:
    """An empty import form, for pages that offer the import beside something else."""
    return ArticleImportForm()


@register.simple_tag
def review_counts(article: Any) -> dict[str, int]:
    """The article's candidates by review state (one query), for its page's header."""
    rows = Candidate.objects.filter(run__article=article).values_list("review_status").annotate(n=Count("pk"))
    return dict(rows.order_by())
