"""An editor in Debian's Chromium: log in, press Generate, watch the run finish, see images."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from gallery.models import Article
from generation.models import GenerationRun
from generation.services import run_submit
from tests.conftest import LOADED_PIXEL_WIDTH_JS, make_user

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_editor_generates_candidates_and_sees_them_appear(
    page: Page, live_server, start_worker, django_user_model
) -> None:
    make_user("editor", "editors")
    Article.objects.create(slug="warm-gpu", title="Keeping a GPU warm", summary="Load once, run many.")
    worker = start_worker()

    page.goto(f"{live_server.url}/")
    page.get_by_label("Username").fill("editor")
    page.get_by_label("Password").fill("editor-pass-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("demo-notice")).to_contain_text("placeholders")
    page.get_by_role("link", name="Keeping a GPU warm").click()

    # The tiny SD model whatever the presets hold (an earlier transactional test may have flushed them).
    page.get_by_label("Model").select_option("tiny-sd")
    page.get_by_label("Count").fill("2")
    page.get_by_label("Seed").fill("1234")
    page.get_by_label("Width").fill("128")
    page.get_by_label("Height").fill("128")
    page.get_by_label("Steps").fill("40")
    page.get_by_role("button", name="Generate").click()

    status = page.get_by_test_id("run-status").first
    expect(status).to_have_text("Succeeded", timeout=90_000)
    images = page.locator(".candidates img")
    expect(images).to_have_count(2)
    for i in range(2):
        pixels, _, source = images.nth(i).evaluate(LOADED_PIXEL_WIDTH_JS)
        assert pixels == 128 and source.endswith(".webp")  # the 256 px thumbnail, never upscaled
    expect(page.locator(".candidates figcaption").first).to_contain_text("seed 1234")
    assert worker.proc.poll() is None


def test_bad_values_show_errors_next_to_their_fields(page: Page, live_server, django_user_model) -> None:
    make_user("editor", "editors")
    Article.objects.create(slug="x", title="X marks", summary="")
    page.goto(f"{live_server.url}/login/?next=/articles/x/")
    page.get_by_label("Username").fill("editor")
    page.get_by_label("Password").fill("editor-pass-123")
    page.get_by_role("button", name="Log in").click()
    page.get_by_label("Seed").fill("-1")
    page.get_by_label("Count").fill("50")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator('[data-field="seed"]')).to_contain_text("between 0 and 4294967295")
    expect(page.locator('[data-field="count"]')).to_contain_text("between 1 and 8")
    expect(page.get_by_text("No runs yet")).to_be_visible()


def test_cancel_button_stops_a_running_run_without_a_page_load(
    page: Page, live_server, start_worker, django_user_model
) -> None:
    make_user("editor", "editors")
    article = Article.objects.create(slug="long", title="A long run", summary="")
    start_worker()
    run = run_submit(article=article, model="tiny-sd", seed=3, count=2, width=128, height=128, steps=1000)

    page.goto(f"{live_server.url}/login/?next=/articles/long/")
    page.get_by_label("Username").fill("editor")
    page.get_by_label("Password").fill("editor-pass-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("run-status").first).to_have_text("Running", timeout=60_000)
    page.evaluate("window.notReloaded = true")
    page.get_by_role("button", name="Cancel").click()

    expect(page.get_by_test_id("run-status").first).to_have_text("Cancelled", timeout=30_000)
    assert page.evaluate("window.notReloaded") is True  # swapped by htmx, not a new page
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.CANCELLED and run.candidates.count() == 0
