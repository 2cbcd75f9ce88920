"""Bearer tokens for the JSON API.

A token is shown once, when it is made; the database keeps only its SHA-256 and a short prefix
to tell tokens apart in the admin. Revoking sets ``revoked_at``; nothing is ever decrypted.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

TOKEN_BYTES = 32
PREFIX_LENGTH = 8
# last_used_at is written at most this often per token, so reads do not each cost a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def token_digest(token: str) -> str:
    """The stored form of a token: its SHA-256 in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def active(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiToken(models.Model):
    """A bearer token of one user. States: active --revoke--> revoked (never back)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="What uses it, e.g. the content pipeline.")
    prefix = models.CharField(max_length=PREFIX_LENGTH, help_text="The token's first characters, to recognise it.")
    digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the token; the token is not stored.")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # AUTOMATIC1111 clients pick "the" model with POST /sdapi/v1/options (sd_model_checkpoint): it
    # is kept per token, so one client's choice never changes another's. Blank: the site default.
    default_model = models.CharField(
        max_length=40, blank=True, help_text="Model profile for this token's AUTOMATIC1111 requests."
    )

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @classmethod
    def issue(cls, *, user: Any, name: str = "") -> tuple[ApiToken, str]:
        """Make a token for ``user``; returns the row and the token, which is never stored."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        row = cls.objects.create(user=user, name=name, prefix=token[:PREFIX_LENGTH], digest=token_digest(token))
        return row, token

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def revoke(self) -> bool:
        """active -> revoked; False when it already was."""
        now = timezone.now()
        won = ApiToken.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=now) == 1
        if won:
            self.revoked_at = now
        return won

    def touch(self) -> None:
        """Record a use, at most once per ``LAST_USED_RESOLUTION``."""
        now = timezone.now()
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        if ApiToken.objects.filter(stale, pk=self.pk).update(last_used_at=now):
            self.last_used_at = now
