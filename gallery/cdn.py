"""Purging published files from Cloudflare's cache by URL.

Published objects are served ``public, max-age=HOFFDESK_PUBLISH_CACHE_SECONDS, immutable``, so
deleting them from the bucket does not take them down: every CDN edge that holds a copy keeps
serving it until it expires. When ``HOFFDESK_CLOUDFLARE_ZONE_ID`` and
``HOFFDESK_CLOUDFLARE_API_TOKEN`` are set, an unpublish that deletes files also asks Cloudflare to
drop them (``POST {api}/zones/{zone}/purge_cache`` with ``{"files": [urls]}``, the documented
purge-by-URL call). Nothing here runs unless it is configured: the project needs no external
service.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from django.conf import settings

# Cloudflare accepts up to 100 URLs per purge call on every plan today; older plans allowed 30.
URLS_PER_CALL = 30
TIMEOUT_SECONDS = 15


class PurgeFailed(Exception):
    """Cloudflare refused or could not be reached; the message says which and why (never the token)."""


def cdn_purge_configured() -> bool:
    return bool(settings.HOFFDESK_CLOUDFLARE_ZONE_ID and settings.HOFFDESK_CLOUDFLARE_API_TOKEN)


def cdn_purge_urls(urls: list[str]) -> None:
    """Purge these absolute URLs from the zone's cache; ``PurgeFailed`` on any refusal."""
    endpoint = (
        f"{settings.HOFFDESK_CLOUDFLARE_API_URL.rstrip('/')}/zones/{settings.HOFFDESK_CLOUDFLARE_ZONE_ID}/purge_cache"
    )
    for start in range(0, len(urls), URLS_PER_CALL):
        _purge_call(endpoint, urls[start : start + URLS_PER_CALL])


def _purge_call(endpoint: str, urls: list[str]) -> None:
    request = urllib.request.Request(
        endpoint,
        data=json.dumps({"files": urls}).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {settings.HOFFDESK_CLOUDFLARE_API_TOKEN}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PurgeFailed(f"Cloudflare could not be reached ({reason}); the files may still be cached.") from None
    try:
        answer = json.loads(body or b"{}")
    except ValueError:
        answer = {}
    if status == 200 and answer.get("success") is True:
        return
    errors = "; ".join(
        f"{error.get('code', '?')}: {error.get('message', '')}"
        for error in answer.get("errors") or []
        if isinstance(error, dict)
    )
    raise PurgeFailed(f"Cloudflare refused the purge (HTTP {status}{': ' + errors if errors else ''}).")
