"""The publish page with a vision model's alt text, and the published social card, in Chromium at
a laptop and a phone size (screenshots for a person to look at). The vision model is a small local
server speaking Ollama's shape (tests/gallery/test_alt_text.py), as Ollama runs on another machine."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from gallery.models import Article
from tests.conftest import make_user
from tests.gallery.test_alt_text import SENTENCE, vision  # noqa: F401  (the fake vision server fixture)
from tests.gallery.test_publishing import approved_candidate, publish_now
from tests.test_browser_review import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES = {"laptop": (1366, 768), "phone": (390, 844)}


def test_the_vision_suggestion_and_the_social_card_in_the_browser(page: Page, live_server, vision) -> None:  # noqa: F811
    editor = make_user("editor", "editors")
    article = Article.objects.create(slug="wal-card", title="Why SQLite's write-ahead log survived the power cut")
    candidate = approved_candidate(article, editor)
    log_in(page, live_server.url, f"/candidates/{candidate.pk}/publish/")
    expect(page.get_by_label("Alt text")).to_have_value(SENTENCE)
    expect(page.get_by_test_id("alt-text-source")).to_contain_text("llava:7b")
    for name, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=f"/tmp/hoffdesk-publish-vision-{name}.png", full_page=True)

    publish_now(candidate, editor, alt=SENTENCE)
    page.goto(f"{live_server.url}{article.get_absolute_url()}#publication")
    card = page.get_by_test_id("social-card-image")
    expect(card).to_be_visible()
    assert page.evaluate("el => el.naturalWidth", card.element_handle()) == 1200
    expect(page.get_by_test_id("og-snippet")).to_contain_text('property="og:image"')
    for name, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.get_by_test_id("social-card").scroll_into_view_if_needed()
        page.screenshot(path=f"/tmp/hoffdesk-social-card-{name}.png")
