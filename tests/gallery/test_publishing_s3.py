"""Publishing against S3 over real HTTP: moto's server behind the recording proxy stands in for
Cloudflare R2 (``publish_storage_r2`` configures the publish storage as settings.py does).
The same flows as tests/gallery/test_publishing.py, checked on the bucket and on the requests."""

from __future__ import annotations

import hashlib
import io
import time
import types
from urllib.parse import urlparse

import pytest
from PIL import Image, features

from gallery import publishing
from gallery.models import Publication
from gallery.publishing import publication_request, publication_retry, publication_run
from generation.models import Candidate
from tests.gallery.test_publishing import approved_candidate, publish_now
from tests.s3_fixtures import PUBLIC_BASE_URL
from tests.test_storage_settings import assert_r2_compatible

pytestmark = pytest.mark.django_db

CONTENT_TYPES = {"webp": "image/webp", "jpg": "image/jpeg", "avif": "image/avif"}
CACHE_CONTROL = "public, max-age=31536000, immutable"


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:  # type: ignore[no-untyped-def]
    """The back-off sleeps of publishing's upload loop (recorded, and kept short)."""
    recorded: list[float] = []

    def sleep(seconds: float) -> None:
        recorded.append(seconds)
        time.sleep(min(seconds, 0.01))

    monkeypatch.setattr(publishing, "time", types.SimpleNamespace(sleep=sleep))
    return recorded


def puts(s3_server) -> list:  # type: ignore[no-untyped-def]
    return [r for r in s3_server.requests if r.method == "PUT"]


def request_and_run(candidate: Candidate, editor, alt: str = "The second hero") -> tuple[Publication, str]:  # type: ignore[no-untyped-def]
    publication = publication_request(candidate=candidate, by=editor, alt_text=alt, focal=(0.5, 0.5))
    outcome = publication_run(publication.pk)
    publication.refresh_from_db()
    return publication, outcome


def test_publishing_uploads_exactly_the_renditions_public_and_immutable(
    publish_storage_r2, s3_server, s3_bucket, article, editor
) -> None:
    candidate = approved_candidate(article, editor)
    publication = publish_now(candidate, editor)

    stored = s3_server.objects(s3_bucket)
    keys = [row["key"] for row in publication.renditions]
    assert len(keys) == len(set(keys))
    assert set(stored) == set(keys)  # nothing else in the bucket
    assert publication.uploaded == len(keys)
    formats = {row["format"] for row in publication.renditions}
    assert formats == ({"webp", "jpeg", "avif"} if features.check("avif") else {"webp", "jpeg"})

    for row in publication.renditions:
        key = row["key"]
        obj = stored[key]
        body = obj["Body"]
        slug, filename = key.split("/")
        assert slug == article.slug
        assert filename.startswith(hashlib.sha256(body).hexdigest()[:16] + "-")
        assert len(body) == row["bytes"] == obj["ContentLength"]
        extension = key.rsplit(".", 1)[1]
        assert obj["ContentType"] == CONTENT_TYPES[extension], key
        assert obj["CacheControl"] == CACHE_CONTROL, key
        with Image.open(io.BytesIO(body)) as image:
            assert image.size == (row["width"], row["height"]), key
            if row["name"] == "hero":
                assert image.size == (1200, 630)
        assert row["url"] == f"{PUBLIC_BASE_URL}/{key}"

    assert {"hero.webp", "hero.jpg", "thumbnail.webp", "thumbnail.jpg"} <= set(publication.urls)
    for url in publication.urls.values():
        assert url.startswith("https://images.hoffdesk.test/")
        assert urlparse(url).query == ""
    article.refresh_from_db()
    candidate.refresh_from_db()
    assert article.hero_candidate == candidate and article.published_urls == publication.urls
    assert candidate.review_status == Candidate.Review.PUBLISHED

    sent = puts(s3_server)
    assert sorted(r.path for r in sent) == sorted(f"/{s3_bucket}/{key}" for key in keys)


def test_publishing_the_same_candidate_again_sends_no_upload(
    publish_storage_r2, s3_server, s3_bucket, article, editor
) -> None:
    candidate = approved_candidate(article, editor)
    first = publish_now(candidate, editor)
    before = s3_server.objects(s3_bucket)
    s3_server.clear()

    second = publish_now(candidate, editor)

    assert puts(s3_server) == []
    assert s3_server.requests, "the publish asked the bucket what it has"
    assert {r.method for r in s3_server.requests} <= {"HEAD"}
    assert second.uploaded == 0
    assert second.urls == first.urls and second.renditions == first.renditions
    assert s3_server.objects(s3_bucket) == before
    first.refresh_from_db()
    assert first.status == Publication.Status.REPLACED


def test_every_put_is_one_r2_accepts(publish_storage_r2, s3_server, article, editor) -> None:
    """No flexible checksums, trailers or aws-chunked streaming: what R2 rejects (docs/design.md)."""
    publication = publish_now(approved_candidate(article, editor), editor)
    sent = puts(s3_server)
    assert len(sent) == len(publication.renditions)
    for put in sent:
        assert not [k for k in put.headers if k.lower().startswith("x-amz-checksum-")], put.headers
        assert put.header("x-amz-trailer") is None
        assert "aws-chunked" not in (put.header("Content-Encoding") or "")
        assert not (put.header("x-amz-content-sha256") or "").startswith("STREAMING-")
        assert_r2_compatible(put)


def test_an_unreachable_storage_fails_keeps_the_old_hero_and_retry_recovers(
    publish_storage_r2, s3_server, s3_bucket, article, editor, settings, sleeps
) -> None:
    settings.HOFFDESK_PUBLISH_RETRY_SECONDS = 0.01
    old = approved_candidate(article, editor, seed=1)
    old_publication = publish_now(old, editor)
    new = approved_candidate(article, editor, seed=2)

    s3_server.stop()
    try:
        publication, outcome = request_and_run(new, editor)
        assert s3_server.requests, "the client did try"
    finally:
        s3_server.restart()

    assert outcome == "failed"
    assert publication.status == Publication.Status.FAILED
    attempts = settings.HOFFDESK_PUBLISH_MAX_ATTEMPTS
    assert publication.error.startswith(f"Could not upload {article.slug}/")
    assert f"-hero.webp after {attempts} tries: " in publication.error  # the first file already
    assert "ConnectionClosedError" in publication.error  # the proxy answers nothing
    assert len(sleeps) == attempts - 1  # backed off between the tries of the first file
    assert publication.urls == {} and publication.renditions == []
    new.refresh_from_db()
    assert new.review_status == Candidate.Review.APPROVED
    article.refresh_from_db()
    assert article.hero_candidate == old and article.published_urls == old_publication.urls
    old_publication.refresh_from_db()
    assert old_publication.status == Publication.Status.PUBLISHED

    # moto forgot everything; restart() made the bucket again, empty.
    assert s3_server.objects(s3_bucket) == {}
    assert publication_retry(publication=publication)
    assert publication_run(publication.pk) == "published"
    publication.refresh_from_db()
    assert publication.status == Publication.Status.PUBLISHED and publication.error == ""
    assert set(s3_server.objects(s3_bucket)) == {row["key"] for row in publication.renditions}
    assert publication.uploaded == len(publication.renditions)
    article.refresh_from_db()
    new.refresh_from_db()
    old_publication.refresh_from_db()
    assert article.hero_candidate == new and article.published_urls == publication.urls
    assert new.review_status == Candidate.Review.PUBLISHED
    assert old_publication.status == Publication.Status.REPLACED


def test_a_missing_bucket_fails_at_once_naming_the_setting(
    publish_storage_r2, s3_server, s3_bucket, article, editor, settings, sleeps
) -> None:
    settings.HOFFDESK_PUBLISH_RETRY_SECONDS = 0.01
    candidate = approved_candidate(article, editor)
    s3_server.delete_bucket(s3_bucket)
    s3_server.clear()

    publication, outcome = request_and_run(candidate, editor, alt="A lighthouse")

    assert outcome == "failed"
    assert publication.status == Publication.Status.FAILED
    assert "HOFFDESK_R2_BUCKET" in publication.error
    assert sleeps == []  # no retry
    assert len(puts(s3_server)) == 1  # one try of the first file, nothing after it
    assert publication.attempts == 1
    candidate.refresh_from_db()
    article.refresh_from_db()
    assert candidate.review_status == Candidate.Review.APPROVED
    assert article.hero_candidate is None and article.published_urls == {}


@pytest.fixture(scope="module")
def s3_server_checking_signatures(tmp_path_factory):  # type: ignore[no-untyped-def]
    from tests.s3_fixtures import S3Server

    server = S3Server(tmp_path_factory.mktemp("moto-auth-publish"), require_auth=True)
    try:
        yield server
    finally:
        server.close()


def test_refused_credentials_fail_at_once_naming_the_key_settings(
    s3_server_checking_signatures, monkeypatch, article, editor, settings
) -> None:
    """A storage that signs with the wrong secret (moto checks SigV4 signatures here)."""
    from storages.backends.s3 import S3Storage

    from gallery import publishing
    from hoffdesk_images.settings import s3_storage_options

    server = s3_server_checking_signatures
    server.create_bucket("publish-auth")
    wrong = S3Storage(
        **s3_storage_options(
            endpoint_url=server.endpoint_url,
            bucket="publish-auth",
            access_key=server.access_key,
            secret_key="not-the-secret",
            public_base_url="https://images.hoffdesk.test",
        )
    )
    monkeypatch.setattr(publishing, "publish_storage", lambda: wrong)
    settings.HOFFDESK_PUBLISH_RETRY_SECONDS = 30  # a retry would make this test hang: there must be none
    publication = publishing.publication_request(
        candidate=approved_candidate(article, editor), by=editor, alt_text="alt", focal=(0.5, 0.5)
    )
    assert publication_run(publication.pk) == "failed"
    publication.refresh_from_db()
    assert "HOFFDESK_R2_ACCESS_KEY_ID" in publication.error and "HOFFDESK_R2_SECRET_ACCESS_KEY" in publication.error
    assert publication.attempts == 1 and server.objects("publish-auth") == {}
    article.refresh_from_db()
    assert article.hero_candidate is None
