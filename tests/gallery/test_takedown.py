"""Takedown honesty: deleting published files does not take them off a CDN (they are cached as
immutable), the page says so, and with Cloudflare configured the deleted files' URLs are purged
from its cache, the outcome recorded on the publication and its failure shown.

Cloudflare is a paid service on another machine: ``CloudflareStandIn`` is a small local HTTP
server that stands in for it, answering ``POST /client/v4/zones/<zone>/purge_cache`` in the shape
of Cloudflare's API v4 (``{"success", "errors": [{"code", "message"}], "messages", "result"}``)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.urls import reverse
from django_q.models import OrmQ

from gallery.models import Publication, PurgeStatus
from gallery.publishing import publication_purge, publication_purge_again, publication_unpublish
from tests.gallery.test_publishing import approved_candidate, empty_publish_folder, publish_now, published_files  # noqa: F401
from tests.test_settings import ROOT

pytestmark = pytest.mark.django_db

ZONE, TOKEN = "023e105f4ecef8ad9ca31a8372d0c353", "cf-token-for-tests-only"
CDN = "https://images.hoffdesk.example/"


class CloudflareStandIn(ThreadingHTTPServer):
    """Stands in for Cloudflare's purge-by-URL endpoint (a paid external service)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.refuse = False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/client/v4"


class _Handler(BaseHTTPRequestHandler):
    server: CloudflareStandIn

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "authorization": self.headers["Authorization"], "body": body})
        if self.server.refuse or self.headers["Authorization"] != f"Bearer {TOKEN}":
            status, answer = (
                403,
                {
                    "success": False,
                    "errors": [{"code": 10000, "message": "Authentication error"}],
                    "messages": [],
                    "result": None,
                },
            )
        elif self.path != f"/client/v4/zones/{ZONE}/purge_cache" or not isinstance(body.get("files"), list):
            error = {"code": 1012, "message": "Request must contain one of purge_everything, files, tags or hosts"}
            status, answer = 400, {"success": False, "errors": [error], "messages": [], "result": None}
        else:
            status, answer = 200, {"success": True, "errors": [], "messages": [], "result": {"id": ZONE}}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def cloudflare(settings) -> Iterator[CloudflareStandIn]:  # type: ignore[no-untyped-def]
    server = CloudflareStandIn()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.HOFFDESK_CLOUDFLARE_ZONE_ID, settings.HOFFDESK_CLOUDFLARE_API_TOKEN = ZONE, TOKEN
    settings.HOFFDESK_CLOUDFLARE_API_URL = server.api_url
    publish = dict(settings.STORAGES["publish"])
    publish["OPTIONS"] = {**publish["OPTIONS"], "base_url": CDN}  # the blog's CDN domain
    settings.STORAGES = {**settings.STORAGES, "publish": publish}
    yield server
    server.shutdown()
    server.server_close()


def unpublish_and_delete(publication: Publication, editor, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        assert publication_unpublish(publication=publication, by=editor, delete_objects=True)
    publication.refresh_from_db()


def test_deleting_files_purges_exactly_their_urls_from_cloudflare(
    article, editor, cloudflare, django_capture_on_commit_callbacks
) -> None:
    publication = publish_now(approved_candidate(article, editor), editor)
    urls = sorted(row["url"] for row in publication.renditions)
    assert urls and all(url.startswith(CDN) for url in urls)

    unpublish_and_delete(publication, editor, django_capture_on_commit_callbacks)
    assert publication.purge_status == PurgeStatus.PENDING
    assert OrmQ.objects.filter(key="light").count() == 1  # the purge waits for the light worker
    assert publication_purge(publication.pk) == "purged"

    publication.refresh_from_db()
    assert publication.purge_status == PurgeStatus.PURGED and publication.purged_at is not None
    assert not published_files()
    assert all(r["authorization"] == f"Bearer {TOKEN}" for r in cloudflare.requests)
    assert sorted(url for r in cloudflare.requests for url in r["body"]["files"]) == urls
    assert all(len(r["body"]["files"]) <= 30 for r in cloudflare.requests)


def test_a_refused_purge_is_recorded_and_shown_and_can_be_tried_again(
    article, editor, editor_client, cloudflare, django_capture_on_commit_callbacks
) -> None:
    publication = publish_now(approved_candidate(article, editor), editor)
    cloudflare.refuse = True
    unpublish_and_delete(publication, editor, django_capture_on_commit_callbacks)
    assert publication_purge(publication.pk) == "failed"

    publication.refresh_from_db()
    assert publication.purge_status == PurgeStatus.FAILED
    assert "HTTP 403" in publication.purge_error and "10000: Authentication error" in publication.purge_error
    assert TOKEN not in publication.purge_error
    page = editor_client.get(article.get_absolute_url()).content.decode()
    assert "10000: Authentication error" in page and 'data-testid="purge-status"' in page

    cloudflare.refuse = False
    with django_capture_on_commit_callbacks(execute=True):
        assert publication_purge_again(publication=publication)
    assert publication_purge(publication.pk) == "purged"


def test_an_unreachable_cloudflare_is_a_recorded_failure_not_a_crash(
    article, editor, cloudflare, settings, django_capture_on_commit_callbacks
) -> None:
    publication = publish_now(approved_candidate(article, editor), editor)
    settings.HOFFDESK_CLOUDFLARE_API_URL = "http://127.0.0.1:9/client/v4"  # nothing listens there
    unpublish_and_delete(publication, editor, django_capture_on_commit_callbacks)
    assert publication_purge(publication.pk) == "failed"
    publication.refresh_from_db()
    assert "could not be reached" in publication.purge_error


def test_without_cloudflare_settings_nothing_is_purged_and_the_page_says_deleting_is_not_a_takedown(
    article, editor, editor_client, django_capture_on_commit_callbacks
) -> None:
    publication = publish_now(approved_candidate(article, editor), editor)
    page = editor_client.get(article.get_absolute_url()).content.decode()
    assert 'data-testid="takedown-note"' in page and "CDN" in page and "HOFFDESK_CLOUDFLARE_ZONE_ID" in page
    unpublish_and_delete(publication, editor, django_capture_on_commit_callbacks)
    assert publication.purge_status == PurgeStatus.NONE and not OrmQ.objects.exists()


def test_the_unpublish_view_deletes_and_asks_for_the_purge(
    article, editor, editor_client, cloudflare, django_capture_on_commit_callbacks
) -> None:
    publication = publish_now(approved_candidate(article, editor), editor)
    with django_capture_on_commit_callbacks(execute=True):
        response = editor_client.post(reverse("gallery:publication_unpublish", args=[publication.pk]), {"delete": "1"})
    assert response.status_code == 302
    publication.refresh_from_db()
    assert publication.status == "unpublished" and publication.purge_status == PurgeStatus.PENDING
    page = editor_client.get(article.get_absolute_url()).content.decode()
    assert "Purging the CDN cache" in page


def _settings_value(tmp_path, expression: str, **env: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith("HOFFDESK_") and k != "DATABASE_URL"}
    full.update({"HOFFDESK_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "hoffdesk_images.settings", **env})
    code = f"import django; django.setup(); from django.conf import settings as s; print({expression})"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full, capture_output=True, text=True, timeout=60)


def test_publish_cache_seconds_sets_the_max_age_of_published_objects(tmp_path) -> None:
    r2 = {
        "HOFFDESK_R2_ENDPOINT_URL": "https://account.r2.cloudflarestorage.com",
        "HOFFDESK_R2_BUCKET": "blog",
        "HOFFDESK_R2_ACCESS_KEY_ID": "id",
        "HOFFDESK_R2_SECRET_ACCESS_KEY": "secret",
        "HOFFDESK_R2_PUBLIC_BASE_URL": CDN,
    }
    result = _settings_value(
        tmp_path, "s.STORAGES['publish']['OPTIONS']['object_parameters']", HOFFDESK_PUBLISH_CACHE_SECONDS="600", **r2
    )
    assert result.returncode == 0, result.stderr
    assert "'CacheControl': 'public, max-age=600, immutable'" in result.stdout
    default = _settings_value(tmp_path, "s.PUBLISH_CACHE_CONTROL")
    assert default.stdout.strip() == "public, max-age=31536000, immutable"


def test_half_a_cloudflare_configuration_stops_startup_naming_both_variables(tmp_path) -> None:
    result = _settings_value(tmp_path, "1", HOFFDESK_CLOUDFLARE_ZONE_ID=ZONE)
    assert result.returncode != 0
    assert "HOFFDESK_CLOUDFLARE_ZONE_ID and HOFFDESK_CLOUDFLARE_API_TOKEN" in result.stderr
