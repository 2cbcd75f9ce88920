"""The Costs page in Debian's Chromium: its three server-rendered SVG charts draw (bars with a real
size on screen), the page fits a phone's width, and the screenshots go to /tmp/shots-costs/."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from gallery.models import Article
from generation.models import StylePreset
from tests.conftest import make_user
from tests.gallery.test_costs import history, monday, seed_run  # noqa: F401  (history is a fixture)
from tests.test_browser_review import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots-costs")


def more_weeks() -> None:
    """Eight weeks of FLUX and SDXL Turbo runs, so the charts have a shape to look at."""
    article = Article.objects.create(slug="weekly", title="Weekly", summary="s", content_type="technical", tone="calm")
    flux = StylePreset.objects.get(slug="costs-photo")
    turbo = StylePreset.objects.get(slug="costs-sketch")
    for weeks_ago in range(2, 9):
        at = monday(weeks_ago) + timedelta(days=2)
        seed_run(article, flux, model="flux-dev-nf4", at=at, gpu=110 * weeks_ago, joules=40_000 * weeks_ago,
                 reviews=["rejected"] * 3 + ["approved"])  # fmt: skip
        seed_run(article, turbo, model="sdxl-turbo", at=at, gpu=20, joules=7_000 * (9 - weeks_ago),
                 estimated=True, reviews=["rejected", "pending"])  # fmt: skip


@pytest.mark.parametrize(("width", "height"), [(1366, 768), (390, 844)])
def test_the_costs_charts_render_in_chromium(page: Page, live_server, history, width: int, height: int) -> None:  # noqa: F811
    more_weeks()
    make_user("editor", "editors")
    page.set_viewport_size({"width": width, "height": height})
    log_in(page, live_server.url, "/costs/")
    expect(page.get_by_role("heading", name="Costs")).to_be_visible()
    charts = page.locator("svg.chart")
    expect(charts).to_have_count(3)
    for key in ("cost", "energy", "approval"):
        figure = page.locator(f'figure[data-chart="{key}"]')
        box = figure.locator("svg.chart").bounding_box()
        assert box is not None and box["width"] > 0.6 * min(width, 700) and box["height"] > 40, (key, box)
        bars = figure.locator("rect")
        assert bars.count() > 0, key
        drawn = [bars.nth(i).bounding_box() for i in range(bars.count())]
        assert any(b is not None and b["width"] > 1 and b["height"] > 1 for b in drawn), key
    expect(page.get_by_test_id("cost-per-hero")).to_contain_text("0.0100 USD")
    expect(page.get_by_test_id("costs-table")).to_contain_text("flux-dev-nf4")
    # Nothing in the page's main column runs off a phone's screen (the tables scroll in their box).
    assert page.evaluate("document.querySelector('main').scrollWidth <= document.querySelector('main').clientWidth")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"costs-{width}x{height}.png"), full_page=True)
    csv_link = page.get_by_test_id("costs-csv")
    assert csv_link.get_attribute("href") == "/costs.csv?weeks=12"
