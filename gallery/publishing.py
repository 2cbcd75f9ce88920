"""Publishing an approved candidate as its article's hero: services and the light-queue tasks.

The web asks (``publication_request``); a task on the ``light`` cluster does the work
(``publication_execute``), so a publish never waits behind a ten-minute GPU run. Renditions are
stored under keys made of the article slug and each file's content hash: publishing the same
image again uploads nothing, and a changed image gets a new URL (a new hero needs no CDN purge).
The article points at the new files only once every one of them is uploaded, and only while the
candidate is still approved. Publish, re-publish, retry and unpublish of one article take turns
on the article's row lock. Deleting files is not a takedown on a CDN: ``publication_purge``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import IntegrityError, close_old_connections, transaction
from django.utils import timezone

from gallery.cdn import PurgeFailed, cdn_purge_configured, cdn_purge_urls
from gallery.models import Article, Publication, PurgeStatus
from gallery.renditions import Rendition, TooSmall, renditions_make
from gallery.services import NOT_FILED, series_lock_from_hero
from generation.models import Candidate
from generation.profiles import suggested_generation_size
from generation.validation import MAX_HIRES_SCALE, hero_scale

logger = logging.getLogger(__name__)

MAX_ALT_TEXT = 500


class PublishConflict(Exception):
    """Another publish of the same article is running: one at a time per article."""


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


def hero_shortfall(candidate: Candidate) -> str:
    """Why this candidate is too small to be the hero, and what to do about it ("" when it is not)."""
    hero_w, hero_h = settings.HOFFDESK_HERO_SIZE
    if candidate.width >= hero_w and candidate.height >= hero_h:
        return ""
    gen_w, gen_h = suggested_generation_size((hero_w, hero_h))
    advice = (
        "Press Make hero size to enlarge it (its composition and seed kept), or regenerate it"
        if can_make_hero_size(candidate)
        else "Regenerate it"
    )
    return (
        f"This image is {candidate.width}x{candidate.height}; the hero needs at least {hero_w}x{hero_h}. "
        f"{advice} at {gen_w}x{gen_h} (keep this composition) and publish that."
    )


def can_make_hero_size(candidate: Candidate) -> bool:
    """Whether one hires pass ("Make hero size") takes this candidate to the hero's size."""
    return hero_scale(candidate.width, candidate.height) <= MAX_HIRES_SCALE


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
    shortfall = hero_shortfall(candidate)
    if shortfall:
        errors["candidate"] = shortfall
    article = candidate.run.article
    if article is None:
        errors["candidate"] = NOT_FILED
    if errors:
        raise ValidationError(errors)
    assert article is not None
    with transaction.atomic():
        _lock_article(article.pk)
        _refuse_if_another_is_live(article.pk)
        try:
            with transaction.atomic():  # the partial unique constraint is the last word
                publication = Publication.objects.create(
                    article=article,
                    candidate=candidate,
                    alt_text=alt_text,
                    focal_x=focal[0],
                    focal_y=focal[1],
                    requested_by=by if getattr(by, "is_authenticated", False) else None,
                )
        except IntegrityError:
            _refuse_if_another_is_live(article.pk)
            raise
        publication_enqueue(publication)
    return publication


def _lock_article(article_id: int) -> None:
    """Serialise publish, re-publish, retry and unpublish of one article: a row lock on
    PostgreSQL; SQLite's IMMEDIATE transactions already take turns."""
    list(Article.objects.select_for_update().filter(pk=article_id).values_list("pk", flat=True))


def _refuse_if_another_is_live(article_id: int, *, besides: int | None = None) -> None:
    live_ones = Publication.objects.filter(article_id=article_id, status=Publication.Status.PUBLISHING)
    if besides is not None:
        live_ones = live_ones.exclude(pk=besides)
    live = live_ones.select_related("requested_by").first()
    if live is not None:
        who = f" by {live.requested_by}" if live.requested_by else ""
        raise PublishConflict(
            f"This article is already being published (candidate {live.candidate_id}, asked for{who} at "
            f"{timezone.localtime(live.requested_at):%H:%M:%S}): wait for it to finish, then publish again."
        )


def publication_enqueue(publication: Publication) -> None:
    from django_q.tasks import async_task

    pk = publication.pk
    transaction.on_commit(
        lambda: async_task("gallery.publishing.publication_execute", pk, cluster="light", task_name=f"publish-{pk}")
    )


def publication_retry(*, publication: Publication) -> bool:
    """failed -> publishing again; ``PublishConflict`` while another publish of the article runs."""
    with transaction.atomic():
        _lock_article(publication.article_id)
        _refuse_if_another_is_live(publication.article_id, besides=publication.pk)
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


def _upload_all(storage: Storage, article: Article, renditions: list[Rendition]) -> list[str]:
    """Upload every rendition not already stored, retrying network errors with backoff; returns
    the keys this call uploaded (the objects that exist only because of it)."""
    uploaded: list[str] = []
    for rendition in renditions:
        key = rendition_key(article, rendition)
        for attempt in range(1, settings.HOFFDESK_PUBLISH_MAX_ATTEMPTS + 1):
            try:
                if _upload(storage, key, rendition):
                    uploaded.append(key)
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
    return uploaded


def _rendition_rows(storage: Storage, article: Article, renditions: list[Rendition]) -> list[dict[str, Any]]:
    """What the publication records of each file: known before anything is uploaded (a URL is
    made from the key alone)."""
    return [
        {
            "name": r.name,
            "format": r.format,
            "width": r.width,
            "height": r.height,
            "bytes": len(r.data),
            "key": rendition_key(article, r),
            "url": storage.url(rendition_key(article, r)),
        }
        for r in renditions
    ]


def _keys_in_use(article_id: int, *, besides: int) -> set[str]:
    """Keys that a publication of the article still needs: a published one, or one publishing
    (it records its keys before it checks which exist). Call under ``_lock_article``."""
    live = Publication.objects.filter(
        article_id=article_id, status__in=[Publication.Status.PUBLISHING, Publication.Status.PUBLISHED]
    ).exclude(pk=besides)
    return {row["key"] for renditions in live.values_list("renditions", flat=True) for row in renditions}


def _delete_unused(storage: Storage, article_id: int, keys: list[str], *, besides: int) -> list[str]:
    """Delete those of ``keys`` no other live publication of the article uses; returns them."""
    in_use = _keys_in_use(article_id, besides=besides)
    deleted = [key for key in keys if key not in in_use]
    for key in deleted:
        storage.delete(key)
    return deleted


def _refusal(candidate_id: int) -> str | None:
    """Why a candidate must not go public now, or None. Approved (or published, or unpublished
    while a re-publish of it runs) is fine; rejected or undone to pending is the editor's no."""
    candidate = Candidate.objects.select_related("reviewed_by").get(pk=candidate_id)
    fine = (Candidate.Review.APPROVED, Candidate.Review.PUBLISHED, Candidate.Review.UNPUBLISHED)
    if candidate.review_status in fine:
        return None
    who = f" by {candidate.reviewed_by}" if candidate.reviewed_by else ""
    return (
        f"Cancelled: candidate {candidate_id} is {candidate.review_status} now (changed{who} after the publish "
        "was asked for), so it was not published; the article keeps its hero."
    )


def publication_execute(publication_id: int) -> str:
    """The light-queue task (takes an id, like every task): see ``publication_run``."""
    close_old_connections()
    return publication_run(publication_id)


def publication_run(publication_id: int) -> str:
    """Make the renditions, upload them, then point the article at them; returns the outcome
    (published, cancelled, failed, superseded, nothing to do).

    The candidate is checked before anything is uploaded and again, under locks on the article
    and the candidate, in the transaction that makes it the hero: an editor who rejects or
    undoes it meanwhile either wins (the publication is cancelled, the objects uploaded only for
    it are deleted, the article keeps its hero) or finds it published (their click is refused).
    """
    publication = Publication.objects.select_related("article", "candidate__run").filter(pk=publication_id).first()
    if publication is None or not publication.start_attempt():
        return "nothing to do"
    candidate, article = publication.candidate, publication.article
    refusal = _refusal(candidate.pk)
    if refusal:
        publication.mark_cancelled(refusal)
        logger.info("publication %s cancelled before uploading: %s", publication.pk, refusal)
        return "cancelled"
    storage = publish_storage()
    try:
        with candidate.image.open("rb") as fh:
            png = fh.read()
        renditions = renditions_make(
            png,
            alt_text=publication.alt_text,
            focal=(publication.focal_x, publication.focal_y),
            card_title=article.title,
        )
        rows = _rendition_rows(storage, article, renditions)
        with transaction.atomic():
            _lock_article(article.pk)
            if not publication.record_renditions(rows):
                return "superseded"
        uploaded = _upload_all(storage, article, renditions)
    except (PublishError, TooSmall) as exc:
        publication.mark_failed(str(exc))
        logger.warning("publication %s failed: %s", publication.pk, exc)
        return "failed"
    except Exception as exc:
        logger.exception("publication %s failed unexpectedly", publication.pk)
        publication.mark_failed(f"Unexpected error while publishing: {type(exc).__name__}: {exc}")
        return "failed"
    with transaction.atomic():
        _lock_article(article.pk)
        list(Candidate.objects.select_for_update().filter(pk=candidate.pk).values_list("pk", flat=True))
        refusal = _refusal(candidate.pk)
        if refusal:
            publication.mark_cancelled(refusal)
            _delete_unused(storage, article.pk, uploaded, besides=publication.pk)
            logger.info("publication %s cancelled after uploading: %s", publication.pk, refusal)
            return "cancelled"
        urls = {f"{r.name}.{r.extension}": row["url"] for r, row in zip(renditions, rows, strict=True)}
        if not publication.mark_published(urls, rows, len(uploaded)):
            return "superseded"
        _point_article_at(publication)
    logger.info("publication %s published %s objects (%s new)", publication.pk, len(renditions), len(uploaded))
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
    from the storage, except keys another publication of the article still uses (published, or
    publishing: a re-publish of the same image uploads nothing). The decision and the deletes
    happen under the article's lock, so a publish of the article waits for them or they see it.
    Deleting files is not a takedown on a CDN; see ``publication_purge``."""
    with transaction.atomic():
        _lock_article(publication.article_id)
        if not publication.unpublish():
            return False
        Candidate.objects.get(pk=publication.candidate_id).unpublish(by=by)
        Article.objects.filter(pk=publication.article_id, hero_candidate_id=publication.candidate_id).update(
            hero_candidate=None, published_urls={}, updated_at=timezone.now()
        )
        if delete_objects:
            keys = [row["key"] for row in publication.renditions]
            deleted = set(_delete_unused(publish_storage(), publication.article_id, keys, besides=publication.pk))
            urls = [row["url"] for row in publication.renditions if row["key"] in deleted]
            if cdn_purge_configured() and urls:
                publication_purge_enqueue(publication, urls)
    return True


def publication_purge_enqueue(publication: Publication, urls: list[str]) -> None:
    """Ask the light queue to purge these deleted files' URLs from Cloudflare's cache."""
    from django_q.tasks import async_task

    if publication.purge_requested(urls):
        pk = publication.pk
        transaction.on_commit(
            lambda: async_task(
                "gallery.publishing.publication_purge_execute", pk, cluster="light", task_name=f"purge-{pk}"
            )
        )


def publication_purge_again(*, publication: Publication) -> bool:
    """The editor's "Purge again" after a failed purge."""
    if publication.purge_status != PurgeStatus.FAILED or not cdn_purge_configured():
        return False
    with transaction.atomic():
        publication_purge_enqueue(publication, list(publication.purge_urls))
    return True


def publication_purge_execute(publication_id: int) -> str:
    """The light-queue task (takes an id): see ``publication_purge``."""
    close_old_connections()
    return publication_purge(publication_id)


def publication_purge(publication_id: int) -> str:
    """Purge the publication's deleted files from the CDN and record how it went."""
    publication = Publication.objects.filter(pk=publication_id, purge_status=PurgeStatus.PENDING).first()
    if publication is None:
        return "nothing to do"
    try:
        cdn_purge_urls(list(publication.purge_urls))
    except PurgeFailed as exc:
        publication.purge_finished(error=str(exc))
        logger.warning("CDN purge for publication %s failed: %s", publication_id, exc)
        return "failed"
    publication.purge_finished()
    logger.info("CDN purge for publication %s: %s URLs", publication_id, len(publication.purge_urls))
    return "purged"


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
