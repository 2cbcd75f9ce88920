"""Articles: what the blog publishes and what needs images."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from hoffdesk_images.state import ConditionalTransitions


class ContentType(models.TextChoices):
    TECHNICAL = "technical", "Technical deep-dive"
    TUTORIAL = "tutorial", "Tutorial"
    PERSONAL = "personal", "Personal story"
    QUICK_TIP = "quick_tip", "Quick tip"


class Series(models.Model):
    """A run of articles that should look like one: the Magic Wand gives every article of the
    series the same seed and preset.

    The look is set by the series' first approved hero (``look_locked``); until then the first
    Magic Wand run of the series sets it provisionally, so articles made before any hero still
    match. An editor may change it on the article page.
    """

    name = models.CharField(max_length=200, unique=True)
    seed = models.PositiveBigIntegerField(null=True, blank=True)
    preset = models.ForeignKey("generation.StylePreset", null=True, blank=True, on_delete=models.SET_NULL)
    look_locked = models.BooleanField(default=False, help_text="Set by an approved hero or an editor.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "series"

    def __str__(self) -> str:
        return self.name


class Article(models.Model):
    slug = models.SlugField(max_length=200, unique=True)
    title = models.CharField(max_length=300)
    summary = models.TextField(blank=True)
    content_type = models.CharField(max_length=20, choices=ContentType.choices, default=ContentType.TECHNICAL)
    tone = models.CharField(max_length=100, blank=True)
    series = models.CharField(max_length=200, blank=True, help_text="The series' name (a Series record).")
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


class PurgeStatus(models.TextChoices):
    NONE = "", "Not asked"
    PENDING = "pending", "Purging the CDN cache"
    PURGED = "purged", "Purged from the CDN cache"
    FAILED = "failed", "CDN purge failed"


class Publication(ConditionalTransitions):
    """An approved candidate published as its article's hero: renditions uploaded to the
    ``publish`` storage under content-hash keys, then the article pointed at them.

    State machine (each arrow one conditional UPDATE)::

        publishing --all renditions uploaded--> published --unpublish--> unpublished
            |  ^   \\                                \\--replaced by a newer hero--> replaced
            v  |retry \\--candidate no longer approved (rejected, undone)--> cancelled
           failed

    The article's ``hero_candidate`` and ``published_urls`` change only in the transaction that
    marks a publication ``published``, so a half-done publish never shows on the blog. At most one
    publication of an article is ``publishing`` at a time (a partial unique constraint, and the
    services lock the article row), and a publishing publication records its object keys before
    it looks for them in the storage, so an unpublish that deletes files can see they are in use.
    """

    class Status(models.TextChoices):
        PUBLISHING = "publishing", "Publishing"
        PUBLISHED = "published", "Published"
        FAILED = "failed", "Failed"
        UNPUBLISHED = "unpublished", "Unpublished"
        REPLACED = "replaced", "Replaced by a newer hero"
        CANCELLED = "cancelled", "Cancelled"

    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="publications")
    candidate = models.ForeignKey("generation.Candidate", on_delete=models.CASCADE, related_name="publications")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PUBLISHING, db_index=True)
    alt_text = models.TextField()
    focal_x = models.FloatField(default=0.5)
    focal_y = models.FloatField(default=0.5)
    urls = models.JSONField(default=dict, blank=True, help_text="Public URL by rendition, e.g. hero.webp.")
    renditions = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    uploaded = models.PositiveSmallIntegerField(default=0, help_text="Objects uploaded by the last attempt.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Deleting files is not a takedown on a CDN (they are cached for HOFFDESK_PUBLISH_CACHE_SECONDS):
    # when Cloudflare is configured, the deleted files' URLs are purged from its cache too.
    purge_status = models.CharField(max_length=8, choices=PurgeStatus.choices, blank=True, default="")
    purge_urls = models.JSONField(default=list, blank=True)
    purge_error = models.TextField(blank=True)
    purged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(focal_x__gte=0, focal_x__lte=1, focal_y__gte=0, focal_y__lte=1),
                name="publication_focal_point_inside",
            ),
            models.UniqueConstraint(
                fields=["article"], condition=Q(status="publishing"), name="one_live_publication_per_article"
            ),
        ]

    def __str__(self) -> str:
        return f"publication {self.pk} of candidate {self.candidate_id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status != self.Status.PUBLISHING

    def start_attempt(self) -> bool:
        """Count an attempt of a publication still publishing (the task's claim)."""
        return self._transition(Q(status=self.Status.PUBLISHING), attempts=F("attempts") + 1, error="")

    def mark_published(self, urls: dict[str, str], renditions: list[dict[str, Any]], uploaded: int) -> bool:
        return self._transition(
            Q(status=self.Status.PUBLISHING),
            status=self.Status.PUBLISHED,
            urls=urls,
            renditions=renditions,
            uploaded=uploaded,
            finished_at=timezone.now(),
        )

    def record_renditions(self, renditions: list[dict[str, Any]]) -> bool:
        """Name the keys this attempt will use, before it looks for them in the storage: from
        here on an unpublish that deletes files keeps them."""
        return self._transition(Q(status=self.Status.PUBLISHING), renditions=renditions)

    def mark_cancelled(self, reason: str) -> bool:
        """publishing -> cancelled: the candidate is no longer one an editor wants public."""
        return self._transition(
            Q(status=self.Status.PUBLISHING),
            status=self.Status.CANCELLED,
            error=reason,
            renditions=[],  # it holds no keys any more: nothing of it is live
            finished_at=timezone.now(),
        )

    def mark_failed(self, error: str) -> bool:
        return self._transition(
            Q(status=self.Status.PUBLISHING),
            status=self.Status.FAILED,
            error=error,
            renditions=[],  # the keys it claimed are not live; a retry claims them again
            finished_at=timezone.now(),
        )

    def retry(self) -> bool:
        """failed -> publishing, for the editor's Retry button."""
        return self._transition(Q(status=self.Status.FAILED), status=self.Status.PUBLISHING, finished_at=None)

    def unpublish(self) -> bool:
        return self._transition(Q(status=self.Status.PUBLISHED), status=self.Status.UNPUBLISHED)

    def purge_requested(self, urls: list[str]) -> bool:
        """Record that these deleted files' URLs are to be purged from the CDN (again, after a failure)."""
        return self._transition(
            ~Q(purge_status=PurgeStatus.PENDING),
            purge_status=PurgeStatus.PENDING,
            purge_urls=urls,
            purge_error="",
            purged_at=None,
        )

    def purge_finished(self, error: str = "") -> bool:
        """pending -> purged, or failed with Cloudflare's answer."""
        return self._transition(
            Q(purge_status=PurgeStatus.PENDING),
            purge_status=PurgeStatus.FAILED if error else PurgeStatus.PURGED,
            purge_error=error,
            purged_at=None if error else timezone.now(),
        )

    def mark_replaced(self) -> bool:
        return self._transition(Q(status=self.Status.PUBLISHED), status=self.Status.REPLACED)
