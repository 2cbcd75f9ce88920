"""The editor's whole job in Debian's Chromium against a live server and a real qcluster:
search, open, generate, watch, review by keyboard and mouse, undo, hero, regenerate three ways.
It also records the article page's image requests and saves the README's screenshot."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Page, expect

from gallery.models import Article
from generation.models import Candidate, GenerationRun
from tests.conftest import LOADED_PIXEL_WIDTH_JS, ROOT, make_user, wait_finished

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SCREENSHOT = ROOT / "docs" / "review-dashboard.png"


def log_in(page: Page, base: str, next_url: str = "/") -> None:
    page.goto(f"{base}/login/?next={next_url}")
    page.get_by_label("Username").fill("editor")
    page.get_by_label("Password").fill("editor-pass-123")
    page.get_by_role("button", name="Log in").click()


def tile(page: Page, candidate: Candidate):  # type: ignore[no-untyped-def]
    return page.locator(f"#candidate-{candidate.pk}")


def regenerate(page: Page, candidate: Candidate, mode_label: str, **fields: str) -> GenerationRun:
    """Open a candidate's regenerate form, pick a mode, edit fields, queue; returns the new run."""
    before = set(GenerationRun.objects.values_list("pk", flat=True))
    tile(page, candidate).get_by_role("link", name="Regenerate…").click()
    page.get_by_role("radio", name=re.compile(mode_label)).check()
    for label, value in fields.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name="Queue the new run").click()
    expect(page.locator(".messages")).to_contain_text("queued")
    (new_pk,) = set(GenerationRun.objects.values_list("pk", flat=True)) - before
    return GenerationRun.objects.get(pk=new_pk)


def test_editor_reviews_and_regenerates_a_whole_article_in_the_browser(page: Page, live_server, start_worker) -> None:
    make_user("editor", "editors")
    Article.objects.create(slug="sqlite-wal", title="SQLite WAL under load", summary="Readers never wait.")
    Article.objects.create(slug="gpu-warm", title="Keeping a GPU warm", summary="Load once.")
    worker = start_worker()
    base = live_server.url
    log_in(page, base)

    # Search the article list, open the article.
    page.get_by_label("Search articles").fill("wal")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_test_id("article-count")).to_contain_text("1 article")
    expect(page.get_by_role("link", name="Keeping a GPU warm")).to_have_count(0)
    page.get_by_role("link", name="SQLite WAL under load").click()

    # Generate with the tiny model: progress, then thumbnails, all without a reload.
    page.get_by_label("Model").select_option("tiny-sd")
    page.get_by_label("Count").fill("3")
    page.get_by_label("Seed").fill("4242")
    page.get_by_label("Width").fill("128")
    page.get_by_label("Height").fill("128")
    page.get_by_label("Steps").fill("30")  # every later run inherits them: keep the whole test short
    page.get_by_role("button", name="Generate").click()
    page.evaluate("window.notReloaded = true")
    expect(page.get_by_test_id("run-progress").first).to_contain_text(re.compile(r"\d+ / 30 steps"), timeout=60_000)
    expect(page.get_by_test_id("run-status").first).to_have_text("Succeeded", timeout=120_000)
    expect(page.locator("[data-candidate]")).to_have_count(3)
    assert page.evaluate("window.notReloaded") is True
    source = GenerationRun.objects.get()
    first, second, third = source.candidates.order_by("index")

    # Approve the first with the keyboard, reject the second with a click (and a reason), undo.
    page.keyboard.press("ArrowRight")  # focuses the first tile
    expect(tile(page, first)).to_be_focused()
    page.keyboard.press("t")  # auto-advance off (on by default): the focus stays on the decided tile
    page.keyboard.press("a")
    expect(tile(page, first).get_by_test_id("review-state")).to_have_text("Approved")
    expect(tile(page, first)).to_be_focused()  # focus survives the swap
    tile(page, second).get_by_label(re.compile("Reason for rejecting")).fill("too busy")
    tile(page, second).get_by_role("button", name="Reject").click()
    expect(tile(page, second).get_by_test_id("review-state")).to_have_text("Rejected")
    tile(page, second).get_by_role("button", name="Undo").click()
    expect(tile(page, second).get_by_test_id("review-state")).to_have_text("Pending")
    expect(page.get_by_test_id("history-event")).to_have_count(3)
    expect(page.locator("#history")).to_contain_text("too busy")
    assert page.evaluate("window.notReloaded") is True

    # Make the approved one the hero.
    tile(page, first).get_by_role("button", name="Make hero").click()
    expect(tile(page, first).get_by_test_id("hero-badge")).to_be_visible()
    Article.objects.get(slug="sqlite-wal").hero_candidate_id == first.pk  # noqa: B015
    assert Article.objects.get(slug="sqlite-wal").hero_candidate_id == first.pk

    # The help overlay opens with "?" and closes with Escape; Enter opens the full view.
    tile(page, third).focus()
    page.keyboard.press("?")
    expect(page.locator("#keyboard-help")).to_be_visible()
    expect(page.locator("#keyboard-help")).to_contain_text("Approve the focused candidate")
    page.keyboard.press("Escape")
    expect(page.locator("#keyboard-help")).to_be_hidden()
    tile(page, third).focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("full-seed")).to_have_text(str(third.seed))
    expect(page.locator("#lightbox")).to_contain_text(source.prompt[:30])
    page.keyboard.press("Escape")
    expect(page.locator("#lightbox")).to_be_hidden()

    # The article page's images: WebP thumbnails only, none over twice their displayed width.
    images: list[str] = []
    page.on("request", lambda request: images.append(request.url) if request.resource_type == "image" else None)
    page.reload()
    expect(page.locator("[data-candidate] img").first).to_be_visible()
    page.wait_for_load_state("networkidle")
    paths = [urlparse(url).path for url in images]
    assert paths and all(re.fullmatch(r"/candidates/\d+/thumb/[0-9a-f]{16}-\d+\.webp", p) for p in paths), paths
    assert not [p for p in paths if p.endswith(".png")]
    grid = page.locator("[data-candidate] img")
    sizes = [grid.nth(i).evaluate(LOADED_PIXEL_WIDTH_JS) for i in range(grid.count())]
    assert sizes and all(0 < pixels <= 2 * shown for pixels, shown, _ in sizes), sizes

    # Keep this composition, with an edited prompt: linked to its run, first candidate on the seed.
    page.goto(f"{base}/articles/sqlite-wal/")
    compose = regenerate(page, third, "Keep this composition", Prompt="a lighthouse made of SQLite pages")
    assert compose.parent_id == source.pk and compose.base_seed == third.seed
    expect(page.locator(f"#run-{compose.pk}").get_by_test_id("run-parent")).to_contain_text(f"from run {source.pk}")
    expect(page.locator(f"#run-{compose.pk}").get_by_test_id("run-status")).to_have_text("Succeeded", timeout=120_000)
    compose_first = compose.candidates.order_by("index").first()
    assert compose_first is not None and compose_first.seed == third.seed
    expect(tile(page, compose_first).get_by_test_id("candidate-seed")).to_contain_text(str(third.seed))

    # An exact re-run reproduces the bytes of the first image.
    page.goto(f"{base}/articles/sqlite-wal/")
    exact = regenerate(page, first, "Exact re-run")
    wait_finished(exact, worker=worker)
    assert exact.status == "succeeded" and exact.parent_id == source.pk
    assert exact.candidates.get(index=0).sha256 == first.sha256

    # Variations of the second at strength 0.2: same seed, recorded variation seeds.
    page.goto(f"{base}/articles/sqlite-wal/")
    variations = regenerate(page, second, "Variations", **{"Variation strength": "0.2", "Count": "2"})
    wait_finished(variations, worker=worker)
    assert variations.status == "succeeded" and variations.variation_strength == 0.2
    made = list(variations.candidates.order_by("index"))
    assert [c.seed for c in made] == [second.seed, second.seed]
    assert len({c.variation_seed for c in made}) == 2 and len({c.sha256 for c in made} | {second.sha256}) == 3
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.goto(f"{base}/articles/sqlite-wal/")
    expect(page.locator(f"#run-{variations.pk}")).to_contain_text("variations")
    assert worker.proc.poll() is None

    # The README's picture: the top of the article page, candidates and their lineage.
    expect(page.locator("[data-candidate] img").last).to_be_visible()
    page.wait_for_load_state("networkidle")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    for width, name in [(1280, "laptop"), (390, "phone")]:
        page.set_viewport_size({"width": width, "height": 900})
        for path in ["/", "/?q=wal&filter=waiting", f"/candidates/{first.pk}/", f"/candidates/{first.pk}/regenerate/"]:
            page.goto(f"{base}{path}")
            slug = re.sub(r"\W+", "-", path).strip("-") or "list"
            page.screenshot(path=f"/tmp/hoffdesk-{name}-{slug}.png", full_page=True)


def test_the_article_page_reads_well_on_a_phone(page: Page, live_server, start_worker) -> None:
    """A phone-width screenshot of the same kind of page, for a person to look at."""
    make_user("editor", "editors")
    Article.objects.create(slug="phone", title="Reviewing on a phone", summary="Two tiles a row.")
    start_worker()
    from generation.services import run_submit

    run = run_submit(article=Article.objects.get(), model="tiny-sd", seed=7, count=4, width=128, height=128, steps=4)
    wait_finished(run)
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, live_server.url, "/articles/phone/")
    expect(page.locator("[data-candidate]")).to_have_count(4)
    widths = page.eval_on_selector_all("[data-candidate]", "tiles => tiles.map(t => t.getBoundingClientRect().right)")
    assert max(widths) <= 390, widths  # nothing runs off the screen
    page.screenshot(path=str(Path("/tmp") / "hoffdesk-phone.png"), full_page=True)


def test_editor_approves_sets_the_focal_point_and_publishes_then_copies_the_snippet(
    page: Page, live_server, start_worker
) -> None:
    from gallery.models import Publication
    from tests.gallery.test_publishing import approved_candidate

    editor = make_user("editor", "editors")
    article = Article.objects.create(slug="wal-hero", title="The WAL hero", summary="Publish me.")
    candidate = approved_candidate(article, editor)
    assert candidate.undo(editor)  # pending: the editor approves it in the browser
    start_worker(Q_CLUSTER_NAME="light")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    log_in(page, live_server.url, "/articles/wal-hero/")

    tile(page, candidate).get_by_role("button", name="Approve").click()
    expect(tile(page, candidate).get_by_test_id("review-state")).to_have_text("Approved")
    tile(page, candidate).get_by_role("link", name="Publish…").click()

    image = page.locator("[data-focal] img")
    box = image.bounding_box()
    assert box is not None
    image.click(position={"x": box["width"] * 0.9, "y": box["height"] * 0.45})
    expect(page.get_by_test_id("focal-readout")).to_contain_text("0.9")
    page.get_by_label("Alt text").fill("")
    page.get_by_role("button", name="Publish").click()
    expect(page.locator('[data-field="alt_text"]')).to_contain_text("Alt text is required")
    assert not Publication.objects.exists()

    page.get_by_label("Alt text").fill("A lighthouse built from SQLite pages at dusk")
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_test_id("publication-status")).to_have_text("Published", timeout=60_000)
    publication = Publication.objects.get()
    assert 0.85 < publication.focal_x < 0.95 and 0.4 < publication.focal_y < 0.5
    expect(page.get_by_test_id("published-url")).to_have_count(len(publication.urls))
    page.get_by_role("button", name="Copy the snippet").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("<picture>") and 'alt="A lighthouse built from SQLite pages at dusk"' in copied
    assert 'width="1200" height="630"' in copied
    expect(tile(page, candidate).get_by_test_id("review-state")).to_have_text("Published")
    page.screenshot(path="/tmp/hoffdesk-laptop-published.png", full_page=True)
