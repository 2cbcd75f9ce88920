"""Culling at a photo editor's speed, in Debian's Chromium against a live server: keys that
decide and rate, auto-advance across runs, the loupe at fit and at 100%, synced compare.

The candidates are real PNG files made with Pillow (as the worker leaves them); no qcluster
is needed because nothing here generates.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from PIL import Image, ImageDraw
from playwright.sync_api import Page, expect

from gallery.models import Article
from generation.models import Candidate, GenerationRun, ReviewEvent
from tests.conftest import make_user, wait_for
from tests.gallery.test_review import make_run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots-keys")
LOUPE_SIZE = 640  # bigger than the 512 px WebP thumbnail, so the PNG is told apart by its width
DISPLAYED_WIDTH_JS = "img => img.getBoundingClientRect().width"


def log_in(page: Page, base: str, next_url: str) -> None:
    page.goto(f"{base}/login/?next={next_url}")
    page.get_by_label("Username").fill("editor")
    page.get_by_label("Password").fill("editor-pass-123")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{next_url}")
    page.wait_for_load_state()  # review.js (deferred) has run: keys pressed now are heard


def draw_pattern(candidate: Candidate) -> None:
    """Give a candidate's PNG detail worth zooming into (circles and a fine grid), so the
    screenshots show what the loupe and compare do; the size and the hash stay true."""
    size = candidate.width
    image = Image.new("RGB", (size, size), (30, 41, 59))
    draw = ImageDraw.Draw(image)
    for x in range(0, size, 16):
        draw.line([(x, 0), (x, size)], fill=(71, 85, 105))
        draw.line([(0, x), (size, x)], fill=(71, 85, 105))
    hue = (candidate.seed * 53) % 255
    for ring in range(8, 0, -1):
        r = ring * size // 18
        box = [size / 2 - r, size / 2 - r, size / 2 + r, size / 2 + r]
        draw.ellipse(box, outline=(hue, 120 + ring * 10, 200), width=3)
    draw.text((12, 12), f"seed {candidate.seed}", fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    name = str(candidate.image.name)
    candidate.image.storage.delete(name)
    candidate.image.storage.save(name, ContentFile(data))
    Candidate.objects.filter(pk=candidate.pk).update(sha256=hashlib.sha256(data).hexdigest())


def two_runs(article: Article, per_run: int = 6, size: int = 64) -> list[Candidate]:
    """Two succeeded runs; their candidates in the order the article page shows them."""
    make_run(article, count=per_run, seed=100, size=size)
    make_run(article, count=per_run, seed=200, size=size)
    if size >= 256:
        for candidate in Candidate.objects.filter(run__article=article):
            draw_pattern(candidate)
    return [c for run in article.runs.order_by("-queued_at", "-id") for c in run.candidates.order_by("index")]


def focused_candidate_id(page: Page) -> str:
    return page.evaluate("() => document.activeElement && document.activeElement.id")


def test_twelve_keystrokes_decide_twelve_candidates_across_two_runs(page: Page, live_server) -> None:
    make_user("editor", "editors")
    article = Article.objects.create(slug="cull", title="Cull me", summary="Twelve to go.")
    order = two_runs(article)
    log_in(page, live_server.url, "/articles/cull/")
    expect(page.get_by_test_id("auto-advance")).to_be_checked()

    page.keyboard.press("ArrowRight")  # focuses the first tile
    expect(page.locator(f"#candidate-{order[0].pk}")).to_be_focused()
    page.keyboard.press("x")
    expect(page.locator(f"#candidate-{order[1].pk}")).to_be_focused()  # auto-advance

    keys = ["x", "p", "p", "x", "x", "p", "x", "p", "x", "p", "x", "p"]
    for key in keys[1:]:
        page.keyboard.press(key)
    wait_for(lambda: ReviewEvent.objects.count() == 12, 20, "12 review events")
    events = list(ReviewEvent.objects.order_by("id").values_list("candidate_id", "action"))
    expected = [(c.pk, "reject" if key == "x" else "approve") for c, key in zip(order, keys, strict=True)]
    assert events == expected
    expect(page.get_by_test_id("culling-status")).to_have_text("This article has no undecided candidate.")
    expect(page.locator("[data-candidate].review-pending")).to_have_count(0)
    assert Candidate.objects.filter(review_status="pending").count() == 0


def test_auto_advance_switch_is_remembered_and_off_keeps_focus(page: Page, live_server) -> None:
    make_user("editor", "editors")
    article = Article.objects.create(slug="stay", title="Stay put", summary="One at a time.")
    order = two_runs(article, per_run=2)
    log_in(page, live_server.url, "/articles/stay/")
    page.keyboard.press("t")  # the key turns it off
    expect(page.get_by_test_id("auto-advance")).not_to_be_checked()
    page.reload()
    expect(page.get_by_test_id("auto-advance")).not_to_be_checked()  # remembered
    page.keyboard.press("ArrowRight")
    page.keyboard.press("p")
    first = page.locator(f"#candidate-{order[0].pk}")
    expect(first.get_by_test_id("review-state")).to_have_text("Approved")
    expect(first).to_be_focused()
    page.get_by_test_id("auto-advance").check()  # the visible switch turns it back on
    page.keyboard.press("u")
    expect(first.get_by_test_id("review-state")).to_have_text("Pending")
    page.keyboard.press("x")
    expect(page.locator(f"#candidate-{order[1].pk}")).to_be_focused()


def test_loupe_fills_the_window_decides_shows_the_next_and_zooms_to_the_png(page: Page, live_server) -> None:
    make_user("editor", "editors")
    article = Article.objects.create(slug="loupe", title="Through the loupe", summary="Fit, then 100%.")
    order = two_runs(article, per_run=3, size=LOUPE_SIZE)
    page.set_viewport_size({"width": 1366, "height": 768})
    log_in(page, live_server.url, "/articles/loupe/")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    loupe = page.locator("#lightbox")
    expect(loupe.get_by_test_id("full-seed")).to_have_text(str(order[0].seed))
    image = loupe.locator("[data-loupe-image]")
    expect(image).to_be_visible()
    box = image.bounding_box()
    assert box is not None and box["height"] > 768 * 0.8, box  # fit: the window's height, nearly

    page.keyboard.press("x")
    expect(loupe.get_by_test_id("full-seed")).to_have_text(str(order[1].seed))  # the next is shown
    expect(page.locator(f"#candidate-{order[0].pk}").get_by_test_id("review-state")).to_have_text("Rejected")
    wait_for(lambda: Candidate.objects.get(pk=order[0].pk).review_status == "rejected", 10, "the reject")

    page.keyboard.press("z")
    page.wait_for_function("w => { const i = document.querySelector('#lightbox [data-loupe-image]'); "
                           "return i && i.complete && i.naturalWidth === w }", arg=LOUPE_SIZE)  # fmt: skip
    assert abs(image.evaluate(DISPLAYED_WIDTH_JS) - LOUPE_SIZE) < 1  # 100%: one image pixel, one CSS pixel
    page.keyboard.press("ArrowRight")  # next keeps the zoom
    expect(loupe.get_by_test_id("full-seed")).to_have_text(str(order[2].seed))
    assert abs(loupe.locator("[data-loupe-image]").evaluate(DISPLAYED_WIDTH_JS) - LOUPE_SIZE) < 1
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "loupe-1366x768-100pct.png"))
    page.keyboard.press("z")
    page.screenshot(path=str(SHOTS / "loupe-1366x768-fit.png"))
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SHOTS / "loupe-390x844-fit.png"))


def test_compare_of_three_zooms_and_pans_together_and_decides_the_focused(page: Page, live_server) -> None:
    make_user("editor", "editors")
    article = Article.objects.create(slug="side", title="Side by side", summary="Three at once.")
    order = two_runs(article, per_run=3, size=LOUPE_SIZE)
    page.set_viewport_size({"width": 1366, "height": 768})
    log_in(page, live_server.url, "/articles/side/")
    page.keyboard.press("ArrowRight")
    for _ in range(3):  # space marks, then the next
        page.keyboard.press(" ")
        page.keyboard.press("ArrowRight")
    page.keyboard.press("c")
    expect(page).to_have_url(
        f"{live_server.url}/articles/side/compare/?c={order[0].pk}&c={order[1].pk}&c={order[2].pk}"
    )
    frames = page.locator("[data-zoom-frame]")
    images = page.locator("[data-zoom-frame] [data-zoom-layer]")  # the thumbnail and the PNG, moved as one
    expect(images).to_have_count(3)

    expect(page.locator("[data-zoom-frame] [data-loupe-image]")).to_have_count(0)  # thumbnails first, no PNG
    before = images.evaluate_all("all => all.map(i => i.style.transform)")
    frames.nth(1).hover()
    page.mouse.wheel(0, -400)
    page.wait_for_function("t => { const all = [...document.querySelectorAll('[data-zoom-frame] [data-zoom-layer]')]"
                           ".map(i => i.style.transform); return new Set(all).size === 1 && all[0] !== t }",
                           arg=before[0])  # fmt: skip
    zoomed = images.evaluate_all("all => all.map(i => i.style.transform)")
    page.wait_for_function(  # the zoom asked each for its PNG
        "w => [...document.querySelectorAll('[data-zoom-frame] [data-loupe-image]')]"
        ".filter(i => i.complete && i.naturalWidth === w).length === 3",
        arg=LOUPE_SIZE,
    )
    assert len(set(zoomed)) == 1 and zoomed != before, (before, zoomed)
    box = frames.nth(0).bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # drag the first: all pan
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 - 80, box["y"] + box["height"] / 2 - 50, steps=4)
    page.mouse.up()
    panned = images.evaluate_all("all => all.map(i => i.style.transform)")
    assert len(set(panned)) == 1 and panned != zoomed, (zoomed, panned)
    page.keyboard.press("z")  # back to fit, then 100%: still one transform
    page.keyboard.press("z")
    assert len(set(images.evaluate_all("all => all.map(i => i.style.transform)"))) == 1

    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "compare-1366x768.png"))
    page.keyboard.press("l")  # focus the second
    page.keyboard.press("p")
    expect(page.locator("[data-compare-item]").nth(1).get_by_test_id("review-state")).to_have_text("Approved")
    page.keyboard.press("l")
    page.keyboard.press("x")
    expect(page.locator("[data-compare-item]").nth(2).get_by_test_id("review-state")).to_have_text("Rejected")
    wanted = {order[0].pk: "pending", order[1].pk: "approved", order[2].pk: "rejected"}
    statuses = Candidate.objects.filter(pk__in=wanted).values_list("pk", "review_status")
    wait_for(lambda: dict(statuses.all()) == wanted, 10, "p and x")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SHOTS / "compare-390x844.png"), full_page=True)
    page.keyboard.press("Escape")
    expect(page).to_have_url(f"{live_server.url}/articles/side/")


def test_a_rating_key_survives_a_reload_shows_in_history_and_filters_the_list(page: Page, live_server) -> None:
    make_user("editor", "editors")
    article = Article.objects.create(slug="rated", title="Rated four", summary="Stars.")
    Article.objects.create(slug="unrated", title="Not rated", summary="No stars.")
    first = two_runs(article, per_run=2)[0]
    log_in(page, live_server.url, "/articles/rated/")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("4")
    tile = page.locator(f"#candidate-{first.pk}")
    expect(tile.get_by_test_id("rating")).to_have_attribute("data-rating", "4")
    wait_for(lambda: Candidate.objects.get(pk=first.pk).rating == 4, 10, "the rating")
    event = ReviewEvent.objects.get()
    assert (event.action, event.rating, event.candidate_id) == ("rate", 4, first.pk)

    page.reload()
    expect(tile.get_by_test_id("rating")).to_have_attribute("data-rating", "4")
    expect(page.get_by_test_id("history-event")).to_contain_text("rated it 4")
    tile.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#lightbox").get_by_test_id("candidate-event")).to_contain_text("rated it 4")

    page.goto(f"{live_server.url}/")
    page.get_by_label("Filter").select_option(label="Rated 4 or more")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_test_id("article-count")).to_contain_text("1 article")
    expect(page.get_by_role("link", name="Rated four")).to_be_visible()
    expect(page.get_by_role("link", name="Not rated")).to_have_count(0)


def test_help_lists_every_key(page: Page, live_server) -> None:
    make_user("editor", "editors")
    article = Article.objects.create(slug="help", title="Help", summary="Keys.")
    two_runs(article, per_run=1)
    log_in(page, live_server.url, "/articles/help/")
    page.keyboard.press("?")
    help_box = page.locator("#keyboard-help")
    expect(help_box).to_be_visible()
    keys = set(help_box.locator("kbd").all_text_contents())
    wanted = {"p", "a", "x", "r", "u", "0", "5", "z", "c", "Space", "t", "g", "Enter", "Esc", "?", "h", "l"}
    assert wanted <= keys, wanted - keys
    expect(help_box).to_contain_text("Auto-advance")
    expect(help_box).to_contain_text("localStorage")
    assert GenerationRun.objects.count() == 2
    page.keyboard.press("Escape")
    SHOTS.mkdir(exist_ok=True)
    for width, height in [(1366, 768), (390, 844)]:
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(SHOTS / f"grid-{width}x{height}.png"), full_page=True)


def test_keys_work_on_a_candidates_own_page_too(page: Page, live_server) -> None:
    make_user("editor", "editors")
    article = Article.objects.create(slug="own", title="Own page", summary="No grid here.")
    first = two_runs(article, per_run=1, size=LOUPE_SIZE)[0]
    log_in(page, live_server.url, f"/candidates/{first.pk}/")
    page.keyboard.press("p")
    expect(page.get_by_test_id("review-state")).to_have_text("Approved")
    page.keyboard.press("5")
    expect(page.get_by_test_id("rating")).to_have_attribute("data-rating", "5")
    wait_for(lambda: Candidate.objects.filter(pk=first.pk, review_status="approved", rating=5).exists(), 10, "p, 5")
    page.keyboard.press("z")
    expect(page.locator("[data-zoom-frame]")).to_have_class(re.compile("zoomed"))
