"""The Magic Wand in Debian's Chromium: one click on the article list shows the queued run's card
in the row at once; a refused click says why next to the button and queues nothing."""

from __future__ import annotations

import importlib

import pytest
from playwright.sync_api import Page, expect

from gallery.models import Article
from generation.models import GenerationRun
from tests.conftest import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def owner_presets(transactional_db: None) -> None:
    """The presets the data migrations make: an earlier transactional test's flush removes them."""
    from django.apps import apps

    for module, function in (("0002_default_presets", "add_defaults"), ("0008_owner_presets", "add_owner_presets")):
        getattr(importlib.import_module(f"generation.migrations.{module}"), function)(apps, None)


def test_the_wand_queues_from_the_list_and_a_refusal_is_shown_in_place(
    page: Page, live_server, settings, owner_presets
) -> None:
    make_user("editor", "editors")
    Article.objects.create(slug="gpu-warm", title="Keeping a GPU warm", summary="Load once.", content_type="technical")
    Article.objects.create(slug="tips", title="Three nginx tips", summary="Small wins.", content_type="quick_tip")
    page.goto(f"{live_server.url}/login/?next=/")
    page.get_by_label("Username").fill("editor")
    page.get_by_label("Password").fill("editor-pass-123")
    page.get_by_role("button", name="Log in").click()

    page.get_by_label("Image style for Keeping a GPU warm").select_option(label="Atmospheric")
    page.locator("form[action='/articles/gpu-warm/wand/']").get_by_role("button", name="Magic Wand").click()
    card = page.locator("#wand-slot-gpu-warm .run")
    expect(card).to_be_visible()
    expect(card.get_by_test_id("run-status")).to_have_text("Queued")
    expect(card.get_by_test_id("stand-in")).to_contain_text("runs on tiny-flux")
    expect(card).to_contain_text("Atmospheric")
    run = GenerationRun.objects.get()
    assert run.article is not None and run.article.slug == "gpu-warm"
    assert run.preset is not None and run.preset.slug == "atmospheric"
    assert page.url.endswith("/")  # no navigation: the card came in place

    settings.HOFFDESK_DEMO = "false"  # the live server shares this process's settings
    page.goto(f"{live_server.url}/articles/tips/")
    page.get_by_role("button", name="Magic Wand").click()
    expect(page.locator("#wand-message-tips").get_by_test_id("wand-error")).to_contain_text("fetch_models sdxl-turbo")
    expect(page.locator("#runs").get_by_test_id("wand-error")).to_have_count(0)
    assert GenerationRun.objects.count() == 1
