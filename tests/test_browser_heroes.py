"""Issue 16 in Debian's Chromium, as a new user meets it: on a fresh install in demo mode, the
Magic Wand (style Auto) on a tutorial, approve the candidate, Publish, and a published hero
of 1200x630 comes out. Tutorials use SDXL Turbo, whose 512-class images reach hero size only
through the preset's hires pass; before it the publish page refused them as too small.

A real GPU qcluster makes the run (on the tiny-sdxl stand-in) and the light cluster publishes.
The service-level test of all four content types is tests/gallery/test_heroes_from_every_preset.py."""

from __future__ import annotations

import io

import pytest
from django.conf import settings
from PIL import Image
from playwright.sync_api import Page, expect

from gallery.models import Article, Publication
from generation.models import GenerationRun
from generation.services import preset_for_article
from tests.conftest import make_user, wait_finished
from tests.gallery.test_publishing import empty_publish_folder  # noqa: F401
from tests.test_browser_review import log_in, tile

# migration_data: the presets the data migrations made (hires pass included) come back
# after an earlier transactional test's flush.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("migration_data"),
]


def test_the_magic_wand_on_a_tutorial_ends_in_a_published_1200x630_hero(
    page: Page, live_server, start_worker, tmp_path
) -> None:
    make_user("editor", "editors")
    article = Article.objects.create(
        slug="nginx-tutorial", title="Serving WebP with nginx", summary="Step by step.", content_type="tutorial"
    )
    preset = preset_for_article(article=article)
    assert preset is not None and preset.model_profile == "sdxl-turbo" and preset.hires_scale  # the hires pass stays on
    preset.steps = 1  # the first pass's steps only, to keep the test quick on CPU
    preset.save(update_fields=["steps"])
    gpu = start_worker()
    start_worker(Q_CLUSTER_NAME="light")
    base = live_server.url
    log_in(page, base, f"/articles/{article.slug}/")

    page.get_by_label(f"Image style for {article.title}").select_option(label="Auto")
    page.get_by_role("button", name="Magic Wand").click()
    expect(page.get_by_test_id("run-status").first).to_have_text("Queued", timeout=10_000)
    run = wait_finished(GenerationRun.objects.get(), timeout=240, worker=gpu)
    assert run.status == "succeeded", run.error
    assert run.is_stand_in and run.preset_id == preset.pk
    assert (run.width, run.height, run.hires_scale) == (912, 480, 1.4)
    candidate = run.candidates.order_by("index").first()
    assert candidate is not None and (candidate.width, candidate.height) == (1272, 672)

    expect(page.get_by_test_id("run-status").first).to_have_text("Succeeded", timeout=30_000)
    expect(tile(page, candidate)).to_be_visible()
    tile(page, candidate).get_by_role("button", name="Approve").click()
    expect(tile(page, candidate).get_by_test_id("review-state")).to_have_text("Approved")
    tile(page, candidate).get_by_role("link", name="Publish…").click()
    expect(page.get_by_role("heading", name=f"Publish seed {candidate.seed} as the hero")).to_be_visible()
    expect(page.get_by_role("button", name="Make hero size")).to_have_count(0)  # already big enough
    page.get_by_label("Alt text").fill("A server rack serving WebP images at dusk")
    page.get_by_role("button", name="Publish").click()

    card = page.get_by_test_id("publication")
    expect(card.get_by_test_id("publication-status")).to_have_text("Published", timeout=60_000)
    publication = Publication.objects.get()
    assert publication.candidate_id == candidate.pk
    hero_row = next(r for r in publication.renditions if r["name"] == "hero" and r["format"] == "jpeg")
    assert (hero_row["width"], hero_row["height"]) == tuple(settings.HOFFDESK_HERO_SIZE) == (1200, 630)
    hero_url = hero_row["url"]
    assert hero_url in publication.urls.values()
    expect(card.get_by_test_id("published-url").filter(has_text=hero_url)).to_have_count(1)
    # The file behind the card's hero URL, as a reader's browser gets it.
    response = page.request.get(hero_url if hero_url.startswith("http") else f"{base}{hero_url}")
    assert response.ok, response.status
    assert Image.open(io.BytesIO(response.body())).size == (1200, 630)
    card.screenshot(path=str(tmp_path / "published-hero-card.png"))
