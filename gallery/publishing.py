"""Publishing an approved candidate as its article's hero: services and the light-queue task.

The web asks (``publication_request``); a task on the ``light`` cluster does the work
(``publication_execute``), so a publish never waits behind a ten-minute GPU run. Renditions are
stored under keys made of the article slug and each file's content hash: publishing the same
image again uploads nothing, and a changed image gets a new URL (no CDN purge ever needed).
The article points at the new files only once every one of them is uploaded.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import close_old_connections, transaction
from django.utils import timezone

from gallery.models import Article, Publication
from gallery.renditions import Rendition, TooSmall, renditions_make, suggested_generation_size
from gallery.services import NOT_FILED, series_lock_from_hero
from generation.models import Candidate

logger = logging.getLogger(__name__)

MAX_ALT_TEXT = 500


class PublishError(Exception):
    """A failure that another attempt cannot fix (wrong key, missing bucket, image too small)."""


def publish_storage() -> Storage:
    return storages["publish"]


def alt_text_suggestion(candidate: Candidate) -> str:
    """A starting point for the editor: the article and the gist of the prompt."""
    run = candidate.run
    gist = run.prompt.split(". ")[0].strip().rstrip(".")
    if run.article is None:  # an Inbox image: the prompt is all there is
        return f"AI-generated illustration: {gist}"[:MAX_ALT_TEXT]
    text = f"AI-generated illustration for “{run.article.title}”"
    if gist and run.article.title not in gist:
        text += f": {gist}"
    return text[:MAX_ALT_TEXT]


def publication_request(*, candidate: Candidate, by: Any, alt_text: str, focal: tuple[float, float]) -> Publication:
    """Check, record and queue a publish; ``ValidationError`` maps field -> message."""
    errors: dict[str, str] = {}
    alt_text = " ".join((alt_text or "").split())
    if not alt_text:
        errors["alt_text"] = "Alt text is required before anything goes public: describe the image for readers."
    elif len(alt_text) > MAX_ALT_TEXT:
        errors["alt_text"] = f"Alt text must be at most {MAX_ALT_TEXT} characters, not {len(alt_text)}."
    if not all(0.0 <= value <= 1.0 for value in focal):
        errors["focal"] = "The focal point must lie inside the image."
    if candidate.review_status not in (Candidate.Review.APPROVED, Candidate.Review.PUBLISHED):
        errors["candidate"] = "Only an approved candidate can be published: approve it first."
    hero_w, hero_h = settings.HOFFDESK_HERO_SIZE
    if candidate.width < hero_w or candidate.height < hero_h:
        errors["candidate"] = (
            f"This image is {candidate.width}x{candidate.height}; the hero needs at least {hero_w}x{hero_h}. "
            "Regenerate it at {}x{} (keep this composition) and publish that.".format(
                *suggested_generation_size((hero_w, hero_h))
            )
        )
    article = candidate.run.article
    if article is None:
        errors["candidate"] = NOT_FILED
    if errors:
        raise ValidationError(errors)
    assert article is not None
    with transaction.atomic():
        running = Publication.objects.filter(candidate=candidate, status=Publication.Status.PUBLISHING).first()
        if running is not None:
            return running
        publication = Publication.objects.create(
            article=article,
            candidate=candidate,
            alt_text=alt_text,
            focal_x=focal[0],
            focal_y=focal[1],
            requested_by=by if getattr(by, "is_authenticated", False) else None,
        )
        publication_enqueue(publication)
    return publication


def publication_enqueue(publication: Publication) -> None:
    from django_q.tasks import async_task

    pk = publication.pk
    transaction.on_commit(
        lambda: async_task("gallery.publishing.publication_execute", pk, cluster="light", task_name=f"publish-{pk}")
    )


def publication_retry(*, publication: Publication) -> bool:
    with transaction.atomic():
        if not publication.retry():
            return False
        publication_enqueue(publication)
    return True


def rendition_key(article: Article, rendition: Rendition) -> str:
    """``<slug>/<first 16 hex of the file's sha256>-<rendition>.<ext>``: same bytes, same key."""
    return f"{article.slug}/{rendition.sha256[:16]}-{rendition.name}.{rendition.extension}"


def _upload(storage: Storage, key: str, rendition: Rendition) -> bool:
    """Store one rendition unless an object with its key (so its bytes) is already there."""
    if storage.exists(key):
        return False
    content = ContentFile(rendition.data, name=key)
    content.content_type = rendition.content_type  # type: ignore[attr-defined]  # read by S3Storage
    storage.save(key, content)
    return True


def _is_permanent(exc: Exception) -> str | None:
    """A message when retrying cannot help (credentials, bucket), else None."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in ("NoSuchBucket",) or (code == "404" and status == 404):
        return "The publish bucket does not exist: check HOFFDESK_R2_BUCKET."
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403") or status in (401, 403):
        return (
            "The storage refused the credentials: check HOFFDESK_R2_ACCESS_KEY_ID and "
            f"HOFFDESK_R2_SECRET_ACCESS_KEY ({code or status})."
        )
    return None


def _upload_all(storage: Storage, article: Article, renditions: list[Rendition]) -> tuple[dict[str, str], int]:
    """Upload every rendition, retrying network errors with backoff; (urls, uploads made)."""
    urls: dict[str, str] = {}
    uploaded = 0
    for rendition in renditions:
        key = rendition_key(article, rendition)
        for attempt in range(1, settings.HOFFDESK_PUBLISH_MAX_ATTEMPTS + 1):
            try:
                uploaded += _upload(storage, key, rendition)
                break
            except Exception as exc:
                permanent = _is_permanent(exc)
                if permanent:
                    raise PublishError(permanent) from exc
                if attempt == settings.HOFFDESK_PUBLISH_MAX_ATTEMPTS:
                    raise PublishError(
                        f"Could not upload {key} after {attempt} tries: {type(exc).__name__}: {exc}"
                    ) from exc
                delay = settings.HOFFDESK_PUBLISH_RETRY_SECONDS * 2 ** (attempt - 1)
                logger.warning("upload of %s failed (%s); trying again in %.1f s", key, exc, delay)
                time.sleep(delay)
        urls[f"{rendition.name}.{rendition.extension}"] = storage.url(key)
    return urls, uploaded


def _rendition_rows(article: Article, renditions: list[Rendition], urls: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "name": r.name,
            "format": r.format,
            "width": r.width,
            "height": r.height,
            "bytes": len(r.data),
            "key": rendition_key(article, r),
            "url": urls[f"{r.name}.{r.extension}"],
        }
        for r in renditions
    ]


def publication_execute(publication_id: int) -> str:
    """The light-queue task (takes an id, like every task): see ``publication_run``."""
    close_old_connections()
    return publication_run(publication_id)


def publication_run(publication_id: int) -> str:
    """Make the renditions, upload them, then point the article at them; returns the outcome."""
    publication = Publication.objects.select_related("article", "candidate__run").filter(pk=publication_id).first()
    if publication is None or not publication.start_attempt():
        return "nothing to do"
    candidate, article = publication.candidate, publication.article
    try:
        with candidate.image.open("rb") as fh:
            png = fh.read()
        renditions = renditions_make(
            png, alt_text=publication.alt_text, focal=(publication.focal_x, publication.focal_y)
        )
        urls, uploaded = _upload_all(publish_storage(), article, renditions)
    except (PublishError, TooSmall) as exc:
        publication.mark_failed(str(exc))
        logger.warning("publication %s failed: %s", publication.pk, exc)
        return "failed"
    except Exception as exc:
        logger.exception("publication %s failed unexpectedly", publication.pk)
        publication.mark_failed(f"Unexpected error while publishing: {type(exc).__name__}: {exc}")
        return "failed"
    with transaction.atomic():
        if not publication.mark_published(urls, _rendition_rows(article, renditions, urls), uploaded):
            return "superseded"
        _point_article_at(publication)
    logger.info("publication %s published %s objects (%s new)", publication.pk, len(renditions), uploaded)
    return "published"


def _point_article_at(publication: Publication) -> None:
    """The new hero replaces the old one in one transaction, after all its files exist."""
    article, candidate = publication.article, publication.candidate
    for older in Publication.objects.filter(article=article, status=Publication.Status.PUBLISHED).exclude(
        pk=publication.pk
    ):
        if older.mark_replaced() and older.candidate_id != candidate.pk:
            Candidate.objects.get(pk=older.candidate_id).unpublish(by=publication.requested_by)
    candidate.mark_published(by=publication.requested_by)
    Article.objects.filter(pk=article.pk).update(
        hero_candidate=candidate, published_urls=publication.urls, updated_at=timezone.now()
    )
    series_lock_from_hero(article=article, candidate=candidate)


def publication_unpublish(*, publication: Publication, by: Any, delete_objects: bool = False) -> bool:
    """Detach a published hero from its article; with ``delete_objects`` also remove its files
    (keys another publication of the same image still uses are kept)."""
    with transaction.atomic():
        if not publication.unpublish():
            return False
        Candidate.objects.get(pk=publication.candidate_id).unpublish(by=by)
        Article.objects.filter(pk=publication.article_id, hero_candidate_id=publication.candidate_id).update(
            hero_candidate=None, published_urls={}, updated_at=timezone.now()
        )
    if delete_objects:
        still_used = {
            row["key"]
            for other in Publication.objects.filter(
                article_id=publication.article_id, status=Publication.Status.PUBLISHED
            )
            for row in other.renditions
        }
        storage = publish_storage()
        for row in publication.renditions:
            if row["key"] not in still_used:
                storage.delete(row["key"])
    return True


def picture_snippet(publication: Publication) -> str:
    """Ready HTML for the blog: AVIF and WebP sources, a JPEG ``<img>`` with srcset and sizes."""
    from html import escape

    rows = [r for r in publication.renditions if r["name"] == "hero" or r["name"].startswith("w")]
    hero = next((r for r in rows if r["name"] == "hero"), None)
    if hero is None:
        return ""

    def srcset(fmt: str) -> str:
        chosen = sorted((r for r in rows if r["format"] == fmt), key=lambda r: r["width"])
        return ", ".join(f"{r['url']} {r['width']}w" for r in chosen)

    sizes = f"(max-width: {hero['width']}px) 100vw, {hero['width']}px"
    sources = [
        f'  <source type="image/{fmt}" srcset="{escape(srcset(fmt))}" sizes="{sizes}">'
        for fmt in ("avif", "webp")
        if srcset(fmt)
    ]
    jpeg = next((r for r in rows if r["name"] == "hero" and r["format"] == "jpeg"), hero)
    img = (
        f'  <img src="{escape(jpeg["url"])}" srcset="{escape(srcset(jpeg["format"]))}" sizes="{sizes}" '
        f'width="{hero["width"]}" height="{hero["height"]}" alt="{escape(publication.alt_text)}">'
    )
    return "\n".join(["<picture>", *sources, img, "</picture>"])
