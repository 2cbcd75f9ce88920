"""Articles from the dashboard: the New article form, Edit, and a JSON import from the browser."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from gallery.models import Article

pytestmark = pytest.mark.django_db

NEW = {"title": "Running FLUX on a 3080 Ti", "slug": "", "content_type": "tutorial", "tone": "calm", "series": "",
       "summary": "Four bits."}  # fmt: skip


def test_a_new_article_without_a_slug_gets_one_from_its_title(editor_client) -> None:
    response = editor_client.post(reverse("gallery:article_new"), NEW)
    article = Article.objects.get()
    assert article.slug == "running-flux-on-a-3080-ti" and article.content_type == "tutorial"
    assert response.status_code == 302 and response["Location"] == article.get_absolute_url()


def test_a_taken_slug_is_refused_naming_the_field_and_nothing_is_written(editor_client) -> None:
    Article.objects.create(slug="taken", title="First")
    response = editor_client.post(reverse("gallery:article_new"), {**NEW, "slug": "taken"})
    assert response.status_code == 400 and Article.objects.count() == 1
    assert 'data-field="slug"' in response.content.decode()


def test_a_title_is_required(editor_client) -> None:
    response = editor_client.post(reverse("gallery:article_new"), {**NEW, "title": "  "})
    assert response.status_code == 400 and Article.objects.count() == 0
    assert 'data-field="title"' in response.content.decode()


def test_edit_changes_the_article(editor_client) -> None:
    article = Article.objects.create(slug="old", title="Old title")
    url = reverse("gallery:article_edit", args=["old"])
    assert editor_client.get(url).status_code == 200
    response = editor_client.post(url, {**NEW, "slug": "old", "title": "New title", "summary": "Now with a summary"})
    article.refresh_from_db()
    assert response.status_code == 302 and (article.title, article.summary) == ("New title", "Now with a summary")


def test_an_onlooker_cannot_add_an_article(client, onlooker) -> None:
    client.force_login(onlooker)
    assert client.post(reverse("gallery:article_new"), NEW).status_code == 403
    assert Article.objects.count() == 0


def upload(records: object, name: str = "articles.json") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, json.dumps(records).encode(), content_type="application/json")


def test_a_json_file_imports_from_the_browser(editor_client) -> None:
    Article.objects.create(slug="known", title="Known")
    records = [{"slug": "one", "title": "One"}, {"slug": "known", "title": "Known, retitled"}]
    response = editor_client.post(reverse("gallery:articles_import"), {"file": upload(records)}, follow=True)
    assert sorted(Article.objects.values_list("slug", "title")) == [("known", "Known, retitled"), ("one", "One")]
    assert "1 created, 1 updated, 0 unchanged" in response.content.decode()


def test_a_bad_record_names_the_record_and_field_and_imports_nothing(editor_client) -> None:
    records = [{"slug": "fine", "title": "Fine"}, {"slug": "no title"}]
    response = editor_client.post(reverse("gallery:articles_import"), {"file": upload(records)})
    page = response.content.decode()
    assert response.status_code == 400 and Article.objects.count() == 0
    assert "record 1 (no title): title:" in page and "record 1 (no title): slug:" in page


def test_a_file_that_is_not_json_is_refused_naming_the_file(editor_client) -> None:
    bad = SimpleUploadedFile("articles.json", b"{not json", content_type="application/json")
    response = editor_client.post(reverse("gallery:articles_import"), {"file": bad})
    assert response.status_code == 400 and "file: articles.json is not valid JSON" in response.content.decode()


def test_the_empty_list_offers_the_form_first_beside_the_import_command(editor_client) -> None:
    page = editor_client.get(reverse("gallery:article_list")).content.decode()
    new_at = page.index('data-testid="new-article"')
    assert new_at < page.index("manage.py import_articles") and 'data-testid="import-form"' in page
