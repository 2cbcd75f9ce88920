"""Live previews in Debian's Chromium: a running run's card shows each candidate forming, the
picture changing as the steps go, before any candidate exists; they go when the run ends.

A real qcluster worker runs the tiny SD model; 1000 steps keep it running long enough for the
card's one-second polling to show several previews (no sleep anywhere in the product)."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from gallery.models import Article
from generation.models import GenerationRun, RunPreview
from generation.services import run_submit
from tests.conftest import make_user, wait_finished

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Each loaded preview on the card as the browser drew it: [src, pixels as a data URL].
SHOWN_PREVIEWS_JS = """() => Array.from(document.querySelectorAll('[data-testid="run-preview"]'))
    .filter(img => img.complete && img.naturalWidth > 0)
    .map(img => {
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth;
        canvas.height = img.naturalHeight;
        canvas.getContext('2d').drawImage(img, 0, 0);
        return [img.getAttribute('src'), canvas.toDataURL('image/png')];
    })"""


def test_a_running_runs_card_shows_its_candidates_forming_before_they_exist(
    page: Page, live_server, start_worker
) -> None:
    make_user("editor", "editors")
    article = Article.objects.create(slug="forming", title="Watching it form", summary="")
    worker = start_worker(HOFFDESK_PREVIEW_EVERY="2")
    run = run_submit(article=article, model="tiny-sd", seed=11, count=2, width=128, height=128, steps=1000)

    page.goto(f"{live_server.url}/login/?next=/articles/forming/")
    page.get_by_label("Username").fill("editor")
    page.get_by_label("Password").fill("editor-pass-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("run-preview")).to_have_count(2, timeout=60_000)

    first_candidate: set[str] = set()
    indexes: set[str] = set()
    deadline = time.monotonic() + 60
    while len(first_candidate) < 2 and time.monotonic() < deadline:
        for src, pixels in page.evaluate(SHOWN_PREVIEWS_JS):
            indexes.add(src.split("?")[0].rsplit("/", 1)[1])
            if "/previews/0.jpg" in src:
                first_candidate.add(pixels)
        assert page.locator(".candidates img").count() == 0  # no candidate yet: these are previews
        page.wait_for_timeout(200)
    assert len(first_candidate) >= 2, "the first candidate's preview never changed on the card"
    assert indexes == {"0.jpg", "1.jpg"}

    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_test_id("run-status").first).to_have_text("Cancelled", timeout=30_000)
    expect(page.get_by_test_id("run-preview")).to_have_count(0)
    assert wait_finished(run, worker=worker).status == GenerationRun.Status.CANCELLED
    assert not RunPreview.objects.filter(run=run).exists()
