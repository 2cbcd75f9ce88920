"""Publishing an approved candidate: renditions under content-hash keys in the publish storage,
the article pointed at them only when all are there, failures that say why, Retry, Unpublish.
These use the default local publish folder; tests/gallery/test_publishing_s3.py does the same
against moto's S3 server over HTTP."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.urls import reverse
from django_q.models import OrmQ
from PIL import Image, ImageDraw

from gallery.models import Article, Publication
from gallery.publishing import picture_snippet, publication_request, publication_run, publication_unpublish
from generation.models import Candidate, GenerationRun, candidate_storage

pytestmark = pytest.mark.django_db

RED_SPOT = (1100, 300)


def big_png(seed: int = 0, spot: tuple[int, int] = RED_SPOT) -> bytes:
    """A 1216x640 picture (the size the hero is generated at) with a red spot to follow."""
    image = Image.new("RGB", (1216, 640), (60 + seed % 100, 70, 90))
    draw = ImageDraw.Draw(image)
    draw.rectangle([spot[0] - 20, spot[1] - 20, spot[0] + 20, spot[1] + 20], fill=(255, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def approved_candidate(article: Article, editor, seed: int = 1, png: bytes | None = None) -> Candidate:  # type: ignore[no-untyped-def]
    png = png or big_png(seed)
    run = GenerationRun.objects.create(
        article=article, model_profile="tiny-flux", prompt="A lighthouse made of SQLite pages. photoreal",
        width=1216, height=640, steps=2, guidance=1.0, base_seed=seed, count=1, status="succeeded",
    )  # fmt: skip
    name = candidate_storage().save(f"runs/{run.pk:06d}/00-seed{seed}.png", ContentFile(png))
    candidate = Candidate.objects.create(
        run=run, index=0, seed=seed, image=name, width=1216, height=640, sha256=hashlib.sha256(png).hexdigest()
    )
    assert candidate.approve(editor)
    return candidate


def publish_now(candidate: Candidate, editor, alt: str = "A lighthouse of SQLite pages", focal=(0.5, 0.5)):  # type: ignore[no-untyped-def]
    publication = publication_request(candidate=candidate, by=editor, alt_text=alt, focal=focal)
    assert publication_run(publication.pk) == "published", Publication.objects.get(pk=publication.pk).error
    publication.refresh_from_db()
    return publication


def _is_red(pixel) -> bool:  # type: ignore[no-untyped-def]
    r, g, b = pixel
    return bool(r > 200 and g < 60 and b < 60)


def published_files() -> dict[str, bytes]:
    root = Path(settings.PUBLISH_DIR)
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(autouse=True)
def empty_publish_folder() -> None:
    import shutil

    shutil.rmtree(settings.PUBLISH_DIR, ignore_errors=True)


def test_publishing_makes_every_rendition_under_content_hash_keys_and_points_the_article_at_them(
    article, editor
) -> None:
    candidate = approved_candidate(article, editor)
    publication = publish_now(candidate, editor)

    files = published_files()
    assert files and all(key.startswith(f"{article.slug}/") for key in files)
    for key, data in files.items():
        assert key.split("/")[1].startswith(hashlib.sha256(data).hexdigest()[:16])
    hero = Image.open(io.BytesIO(files[next(k for k in files if k.endswith("-hero.webp"))]))
    assert hero.size == settings.HOFFDESK_HERO_SIZE == (1200, 630)
    assert set(publication.urls) >= {"hero.webp", "hero.jpg", "thumbnail.webp", "thumbnail.jpg"}
    assert all(url.startswith("/published/") for url in publication.urls.values())
    article.refresh_from_db()
    candidate.refresh_from_db()
    assert article.hero_candidate == candidate and article.published_urls == publication.urls
    assert candidate.review_status == Candidate.Review.PUBLISHED
    assert publication.uploaded == len(files)


def test_publishing_the_same_image_again_uploads_nothing(article, editor) -> None:
    candidate = approved_candidate(article, editor)
    first = publish_now(candidate, editor)
    before = published_files()
    second = publish_now(candidate, editor)
    assert second.uploaded == 0 and second.urls == first.urls and published_files() == before
    first.refresh_from_db()
    assert first.status == Publication.Status.REPLACED


def test_the_focal_point_decides_what_the_thumbnail_keeps(article, editor, settings) -> None:
    settings.HOFFDESK_THUMBNAIL_SIZE = (300, 300)
    spot = publish_now(approved_candidate(article, editor, seed=1), editor, focal=(1100 / 1216, 300 / 640))
    centre = publish_now(approved_candidate(article, editor, seed=2), editor, focal=(0.5, 0.5))

    def red_pixels(publication: Publication) -> int:
        key = next(r["key"] for r in publication.renditions if r["name"] == "thumbnail" and r["format"] == "webp")
        image = Image.open(Path(settings.PUBLISH_DIR) / key).convert("RGB")
        pixels = image.load()
        assert pixels is not None
        w, h = image.size
        return sum(1 for x in range(w) for y in range(h) if _is_red(pixels[x, y]))

    assert red_pixels(spot) > 100 and red_pixels(centre) == 0


def test_without_alt_text_nothing_is_recorded_or_uploaded(article, editor) -> None:
    candidate = approved_candidate(article, editor)
    with pytest.raises(ValidationError) as error:
        publication_request(candidate=candidate, by=editor, alt_text="   ", focal=(0.5, 0.5))
    assert "Alt text is required" in str(error.value.message_dict["alt_text"])
    assert not Publication.objects.exists() and not published_files()


def test_a_candidate_too_small_for_the_hero_is_refused_with_the_size_to_generate(article, editor) -> None:
    candidate = approved_candidate(article, editor)
    Candidate.objects.filter(pk=candidate.pk).update(width=512, height=512)
    candidate.refresh_from_db()
    with pytest.raises(ValidationError) as error:
        publication_request(candidate=candidate, by=editor, alt_text="x", focal=(0.5, 0.5))
    message = " ".join(error.value.message_dict["candidate"])
    assert "512x512" in message and "1216x640" in message
    assert not Publication.objects.exists()


def test_only_an_approved_candidate_can_be_published(article, editor) -> None:
    candidate = approved_candidate(article, editor)
    candidate.reject(editor)
    with pytest.raises(ValidationError, match="approve it first"):
        publication_request(candidate=candidate, by=editor, alt_text="x", focal=(0.5, 0.5))


def test_a_new_hero_replaces_the_old_one_only_once_it_is_published(article, editor) -> None:
    old = approved_candidate(article, editor, seed=1)
    old_publication = publish_now(old, editor)
    new = approved_candidate(article, editor, seed=2)
    pending = publication_request(candidate=new, by=editor, alt_text="The new one", focal=(0.5, 0.5))
    article.refresh_from_db()
    assert article.hero_candidate == old  # still the old one while the new one uploads
    publication_run(pending.pk)
    article.refresh_from_db()
    old_publication.refresh_from_db()
    old.refresh_from_db()
    assert article.hero_candidate == new and old_publication.status == Publication.Status.REPLACED
    assert old.review_status == Candidate.Review.UNPUBLISHED


def test_unpublish_detaches_the_hero_and_can_delete_its_files(article, editor) -> None:
    publication = publish_now(approved_candidate(article, editor), editor)
    assert publication_unpublish(publication=publication, by=editor, delete_objects=True)
    article.refresh_from_db()
    assert article.hero_candidate is None and article.published_urls == {}
    assert not published_files()
    assert not publication_unpublish(publication=publication, by=editor)  # only once


def test_a_storage_failure_ends_failed_with_the_reason_and_retry_succeeds(article, editor, settings) -> None:
    from gallery import publishing

    settings.HOFFDESK_PUBLISH_RETRY_SECONDS = 0.01
    candidate = approved_candidate(article, editor)
    publication = publication_request(candidate=candidate, by=editor, alt_text="alt", focal=(0.5, 0.5))
    real_upload = publishing._upload

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ConnectionError("connection refused")

    publishing._upload = broken
    try:
        assert publication_run(publication.pk) == "failed"
    finally:
        publishing._upload = real_upload
    publication.refresh_from_db()
    article.refresh_from_db()
    assert publication.status == "failed" and "connection refused" in publication.error
    assert f"after {settings.HOFFDESK_PUBLISH_MAX_ATTEMPTS} tries" in publication.error
    assert article.hero_candidate is None and not published_files()
    candidate.refresh_from_db()
    assert candidate.review_status == Candidate.Review.APPROVED

    assert publishing.publication_retry(publication=publication)
    assert publication_run(publication.pk) == "published"


def test_the_snippet_is_a_picture_with_srcset_sizes_width_height_and_alt(article, editor) -> None:
    publication = publish_now(approved_candidate(article, editor), editor, alt='Pages "stacked" <tall>')
    snippet = picture_snippet(publication)
    assert snippet.startswith("<picture>") and '<source type="image/webp"' in snippet
    assert 'width="1200" height="630"' in snippet and "sizes=" in snippet and " 480w" in snippet
    assert 'alt="Pages &quot;stacked&quot; &lt;tall&gt;"' in snippet


def test_the_publish_page_prefills_alt_text_and_queues_on_the_light_cluster(
    editor_client, editor, article, django_capture_on_commit_callbacks
) -> None:
    candidate = approved_candidate(article, editor)
    url = reverse("gallery:candidate_publish", args=[candidate.pk])
    page = editor_client.get(url).content.decode()
    assert "AI-generated illustration for “Running FLUX on a 3080 Ti”" in page

    response = editor_client.post(url, {"alt_text": "", "focal_x": "0.5", "focal_y": "0.5"})
    assert response.status_code == 400 and b"Alt text is required" in response.content
    assert not Publication.objects.exists() and not OrmQ.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = editor_client.post(url, {"alt_text": "A lighthouse", "focal_x": "0.9", "focal_y": "0.4"})
    assert response.status_code == 302
    publication = Publication.objects.get()
    assert (publication.focal_x, publication.focal_y, publication.alt_text) == (0.9, 0.4, "A lighthouse")
    assert list(OrmQ.objects.values_list("key", flat=True)) == ["light"]


def test_the_article_page_shows_urls_copy_buttons_and_the_snippet(editor_client, editor, article) -> None:
    publication = publish_now(approved_candidate(article, editor), editor)
    page = editor_client.get(article.get_absolute_url()).content.decode()
    assert 'data-testid="publication-status">Published<' in page
    assert page.count('data-testid="published-url"') == len(publication.urls)
    assert "&lt;picture&gt;" in page and "Copy the snippet" in page
    served = editor_client.get(publication.urls["hero.webp"])
    assert served.status_code == 200  # the local publish folder stands in for the CDN


def test_the_article_list_published_filter_reads_publications(editor_client, editor, article) -> None:
    publish_now(approved_candidate(article, editor), editor)
    Article.objects.create(slug="unpublished", title="Not yet")
    body = editor_client.get("/?filter=published").content.decode()
    assert "Running FLUX on a 3080 Ti" in body and "Not yet" not in body


def test_a_focal_point_outside_the_image_is_a_clear_error_and_nothing_is_queued(editor_client, editor, article) -> None:
    candidate = approved_candidate(article, editor)
    url = reverse("gallery:candidate_publish", args=[candidate.pk])
    response = editor_client.post(url, {"alt_text": "A lighthouse", "focal_x": "1.7", "focal_y": "abc"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "Focal point across: Ensure this value is less than or equal to 1" in body
    assert "Focal point down: Enter a number." in body
    assert not Publication.objects.exists() and not OrmQ.objects.exists()
