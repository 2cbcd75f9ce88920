"""Candidates in a private S3 bucket (the HOFFDESK_CANDIDATES_* settings), no local folder: a real
``qcluster`` writes PNGs and thumbnails to moto's S3 server through the recording proxy, the web
streams them to a logged-in editor, and publishing reads its source image from the bucket."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.urls import reverse

from gallery.models import Publication
from gallery.publishing import publication_request, publication_run
from gallery.templatetags.gallery_tags import thumb_url
from generation.models import GenerationRun, candidate_file_name
from generation.services import run_submit
from generation.thumbnails import THUMBNAIL_WIDTHS, thumbnail_name
from tests.conftest import wait_finished, wait_for
from tests.gallery.test_publishing import approved_candidate
from tests.test_storage_settings import assert_r2_compatible

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def local_candidate_files() -> list[Path]:
    root = Path(settings.CANDIDATES_DIR)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def streamed(response: Any) -> bytes:
    return b"".join(response.streaming_content)


def test_a_worker_writes_candidates_to_the_bucket_and_the_web_streams_them(
    start_worker, candidates_env, candidates_on_s3, s3_server, s3_bucket, article, editor, editor_client
) -> None:
    storage = candidates_on_s3
    assert type(storage).__name__ == "S3Storage"
    # moto accepts any key here: the worker gets one no log line or page may show.
    bucket_secret = "bucket-secret-" + secrets.token_hex(12)
    worker = start_worker(**{**candidates_env, "HOFFDESK_CANDIDATES_SECRET_ACCESS_KEY": bucket_secret})
    pages: list[str] = []
    run = run_submit(article=article, model="tiny-sd", seed=4242, count=2, width=64, height=64, steps=2)

    wait_finished(run, worker=worker)

    assert run.status == GenerationRun.Status.SUCCEEDED, run.error
    candidates = list(run.candidates.order_by("index"))
    assert [c.seed for c in candidates] == [4242, 4243]
    # The worker writes the thumbnails right after the commit; nothing here has asked for one.
    thumb_keys = {thumbnail_name(c.sha256, w) for c in candidates for w in THUMBNAIL_WIDTHS}
    in_bucket = lambda: thumb_keys <= set(s3_server.objects(s3_bucket, with_bodies=False))  # noqa: E731
    wait_for(in_bucket, 30, "the worker's thumbnails", worker)
    stored = s3_server.objects(s3_bucket)
    expected = set()
    for candidate in candidates:
        name = candidate_file_name(run.pk, candidate.index, candidate.seed)
        assert candidate.image.name == name
        thumbs = [thumbnail_name(candidate.sha256, width) for width in THUMBNAIL_WIDTHS]
        expected |= {name, *thumbs}
        assert hashlib.sha256(stored[name]["Body"]).hexdigest() == candidate.sha256
        assert (candidate.width, candidate.height) == (64, 64)
        for thumb in thumbs:
            assert stored[thumb]["Body"][:4] == b"RIFF" and stored[thumb]["Body"][8:12] == b"WEBP"
    assert set(stored) == expected  # the PNGs and two WebP thumbnails of each, nothing else
    worker_puts = [r for r in s3_server.requests if r.method == "PUT"]  # through the proxy
    assert sorted(r.path for r in worker_puts) == sorted(f"/{s3_bucket}/{key}" for key in expected)
    for put in worker_puts:
        assert_r2_compatible(put)
    assert local_candidate_files() == []

    for candidate in candidates:
        name = str(candidate.image.name)
        response = editor_client.get(reverse("gallery:candidate_image", args=[candidate.pk]))
        assert response.status_code == 200
        assert response["Content-Type"] == "image/png"
        assert streamed(response) == stored[name]["Body"]

        for width in THUMBNAIL_WIDTHS:
            response = editor_client.get(thumb_url(candidate, width))
            assert response.status_code == 200, thumb_url(candidate, width)
            assert response["Content-Type"] == "image/webp"
            assert streamed(response) == stored[thumbnail_name(candidate.sha256, width)]["Body"]

        response = editor_client.get(reverse("gallery:candidate_detail", args=[candidate.pk]))
        assert response.status_code == 200
        pages.append(response.content.decode())
        assert reverse("gallery:candidate_image", args=[candidate.pk]) in response.content.decode()
    assert local_candidate_files() == []

    # Publishing reads its source PNG from the bucket (the hero needs a 1216x640 one, so that is
    # uploaded through the candidate storage) and writes to the local publish folder.
    assert settings.PUBLISH_IS_LOCAL
    big = approved_candidate(article, editor, seed=7)
    assert storage.exists(str(big.image.name))
    assert str(big.image.name) in s3_server.objects(s3_bucket, with_bodies=False)
    publication = publication_request(candidate=big, by=editor, alt_text="A lighthouse", focal=(0.5, 0.5))
    assert publication_run(publication.pk) == "published", Publication.objects.get(pk=publication.pk).error
    publication.refresh_from_db()
    assert publication.status == "published"
    assert all(url.startswith(settings.PUBLISH_BASE_URL) for url in publication.urls.values())
    publish_dir = Path(settings.PUBLISH_DIR)
    assert all((publish_dir / row["key"]).is_file() for row in publication.renditions)
    assert local_candidate_files() == []

    # No secret in any log line or page: the bucket's key and the signing key.
    pages += [editor_client.get(url).content.decode() for url in (article.get_absolute_url(), "/healthz")]
    for secret in (bucket_secret, settings.SECRET_KEY):
        assert secret not in worker.output()
        assert not any(secret in page for page in pages)
