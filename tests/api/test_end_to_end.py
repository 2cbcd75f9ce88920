"""The content pipeline's whole trip through the API, with real qcluster workers: create an
article, queue a tiny run, poll it, fetch the PNG with the token, approve, publish on the light
queue, and find the hero on the article."""

from __future__ import annotations

import io
import shutil
import time
from typing import Any

import pytest
from django.conf import settings
from PIL import Image

from tests.api.conftest import ApiClient, seeded_candidate
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

HERO_GENERATION_SIZE = (1216, 640)  # what publishing asks for: the tiny models stop at 1024


def poll(api: ApiClient, url: str, done: Any, timeout: float, worker: Any) -> dict[str, Any]:
    """GET ``url`` until ``done(body)``; the last body."""
    last: dict[str, Any] = {}

    def check() -> bool:
        nonlocal last
        last = api.get(url).json()
        return bool(done(last))

    wait_for(check, timeout, f"{url} to finish", worker)
    return last


def test_article_to_published_hero_through_the_api(start_worker, token) -> None:
    shutil.rmtree(settings.PUBLISH_DIR, ignore_errors=True)
    gpu = start_worker()
    light = start_worker(Q_CLUSTER_NAME="light")
    api = ApiClient(token)

    article = {"slug": "api-trip", "title": "A trip through the API", "summary": "Scripts talk JSON."}
    assert api.post("/api/v1/articles", article).status_code == 201
    recipe = {"prompt": "A lighthouse", "model": "tiny-sd", "width": 64, "height": 64, "steps": 2, "count": 1}
    queued = api.post("/api/v1/articles/api-trip/runs", {**recipe, "seed": 42})
    assert queued.status_code == 202, queued.content

    started = time.monotonic()
    run = poll(api, f"/api/v1/runs/{queued.json()['id']}", lambda b: b["status"] not in ("queued", "running"), 180, gpu)
    assert run["status"] == "succeeded", run["error"]
    assert run["progress"] == {"step": 2, "total": 2} and time.monotonic() - started < 180
    [candidate] = run["candidates"]
    assert (candidate["seed"], candidate["width"], candidate["height"]) == (42, 64, 64)

    png = api.get(candidate["image_url"])
    assert png.status_code == 200
    assert Image.open(io.BytesIO(b"".join(png.streaming_content))).size == (64, 64)

    approved = api.post(f"/api/v1/candidates/{candidate['id']}/approve", {"reason": "Good light"})
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    too_small = api.post(f"/api/v1/candidates/{candidate['id']}/publish", {"alt_text": "A lighthouse at dusk"})
    assert too_small.status_code == 409 and "1216x640" in too_small.json()["detail"]

    # A candidate at the hero's generation size, its PNG written here (no tiny model goes that big).
    from gallery.models import Article

    big = seeded_candidate(Article.objects.get(slug="api-trip"), size=HERO_GENERATION_SIZE)
    assert api.post(f"/api/v1/candidates/{big.pk}/approve").status_code == 200
    publish = {"alt_text": "A lighthouse at dusk", "focal_point": {"x": 0.3, "y": 0.5}}
    response = api.post(f"/api/v1/candidates/{big.pk}/publish", publish)
    assert response.status_code == 202, response.content
    assert response.json()["publication"]["status"] == "publishing"

    done = poll(api, f"/api/v1/candidates/{big.pk}", lambda b: b["publication"]["status"] != "publishing", 120, light)
    assert done["publication"]["status"] == "published", done["publication"]["error"]
    assert done["status"] == "published" and done["alt_text"] == "A lighthouse at dusk"
    urls = done["publication"]["urls"]
    assert urls and all(url.startswith("http://testserver/published/api-trip/") for url in urls.values())

    hero = api.get("/api/v1/articles/api-trip").json()["hero"]
    assert hero == {"candidate": big.pk, "urls": urls}
    hero_jpeg: Any = api.client.get(urls["hero.jpg"].removeprefix("http://testserver"))
    assert hero_jpeg.status_code == 200
    assert Image.open(io.BytesIO(b"".join(hero_jpeg.streaming_content))).size == tuple(settings.HOFFDESK_HERO_SIZE)
