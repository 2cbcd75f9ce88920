"""Survey and bulk in Debian's Chromium: "Reject all not kept" with its count, one Undo for the
batch, a second editor's decision skipped and named, shift-click selection; and a new user who
adds an article in the form and presses the Magic Wand without a terminal."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Dialog, Page, expect

from gallery.models import Article
from gallery.services import candidate_review
from generation.models import Candidate, GenerationRun, ReviewEvent
from tests.conftest import make_user
from tests.gallery.test_review import make_run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page: Page, base: str, next_url: str = "/") -> None:
    page.goto(f"{base}/login/?next={next_url}")
    page.get_by_label("Username").fill("editor")
    page.get_by_label("Password").fill("editor-pass-123")
    page.get_by_role("button", name="Log in").click()


def states(run: GenerationRun) -> list[str]:
    return list(run.candidates.order_by("index").values_list("review_status", flat=True))


def test_reject_all_not_kept_rejects_six_keeps_two_and_one_undo_restores_them(page: Page, live_server) -> None:
    editor = make_user("editor", "editors")
    article = Article.objects.create(slug="culling", title="Culling a shoot", summary="Keep two.")
    run = make_run(article, count=8, seed=300)
    kept = list(run.candidates.order_by("index")[:2])
    for candidate in kept:
        candidate_review(candidate=candidate, action="approve", by=editor)
    log_in(page, live_server.url, article.get_absolute_url())

    asked: list[str] = []

    def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    page.locator(f"#run-{run.pk}").get_by_role("button", name=re.compile("Reject all not kept")).click()
    expect(page.locator(".messages")).to_contain_text("Rejected 6 candidates.")
    assert asked == ["Reject 6 candidates not kept?"]
    assert states(run) == ["approved"] * 2 + ["rejected"] * 6
    assert ReviewEvent.objects.filter(action="reject").values("batch").distinct().count() == 1
    expect(page.get_by_test_id("header-waiting")).to_have_text("0 waiting")

    page.get_by_role("button", name="Undo these 6 decisions").click()
    expect(page.locator(".messages")).to_contain_text("Restored 6 candidates.")
    assert states(run) == ["approved"] * 2 + ["pending"] * 6
    expect(page.get_by_test_id("header-waiting")).to_have_text("6 waiting")


def test_a_candidate_another_editor_approved_meanwhile_is_skipped_and_named(page: Page, live_server) -> None:
    make_user("editor", "editors")
    other = make_user("other-editor", "editors")
    article = Article.objects.create(slug="two-editors", title="Two editors", summary="Both at work.")
    run = make_run(article, count=4, seed=500)
    log_in(page, live_server.url, article.get_absolute_url())
    expect(page.locator("[data-candidate]")).to_have_count(4)

    taken = run.candidates.get(index=2)
    candidate_review(candidate=taken, action="approve", by=other)  # after this editor's page loaded

    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("bulk-toolbar").get_by_role("button", name=re.compile("Reject all not kept")).click()
    expect(page.locator(".messages")).to_contain_text(
        "Rejected 3 candidates. Skipped 1: seed 502 (now approved by other-editor)."
    )
    assert states(run) == ["rejected", "rejected", "approved", "rejected"]


def test_shift_click_and_shift_arrows_select_and_one_request_approves_them(page: Page, live_server) -> None:
    make_user("editor", "editors")
    article = Article.objects.create(slug="select", title="Selecting", summary="Many at once.")
    run = make_run(article, count=5, seed=700)
    first, second, third, fourth, _ = run.candidates.order_by("index")
    log_in(page, live_server.url, article.get_absolute_url())

    page.locator(f"#candidate-{first.pk} img").click(modifiers=["Shift"])
    page.locator(f"#candidate-{third.pk} img").click(modifiers=["Shift"])  # the range from the first
    expect(page.get_by_test_id("bulk-toolbar")).to_contain_text("3 selected")
    expect(page.locator("dialog[open]")).to_have_count(0)  # a shift-click selects, never opens
    page.keyboard.press("Shift+ArrowRight")  # from the third, the fourth joins
    expect(page.get_by_test_id("bulk-toolbar")).to_contain_text("4 selected")
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Approve selected").click()
    expect(page.locator(".messages")).to_contain_text("Approved 4 candidates.")
    assert states(run) == ["approved"] * 4 + ["pending"]
    assert Candidate.objects.get(pk=fourth.pk).reviewed_by is not None
    assert {second.pk, third.pk} <= set(ReviewEvent.objects.values_list("candidate", flat=True))


def test_a_new_user_adds_an_article_in_the_form_and_presses_the_magic_wand(
    page: Page, live_server, migration_data
) -> None:
    make_user("editor", "editors")
    log_in(page, live_server.url)
    expect(page.get_by_test_id("empty-start")).to_be_visible()

    page.get_by_test_id("new-article").click()
    page.get_by_label("Title").fill("Keeping a GPU warm")
    expect(page.get_by_label("Slug")).to_have_value("keeping-a-gpu-warm")  # proposed as the title is typed
    page.get_by_label("Content type").select_option(label="Quick tip")
    page.get_by_label("Summary").fill("Load the model once, keep it.")
    page.get_by_role("button", name="Add the article").click()
    expect(page.locator("h1")).to_have_text("Keeping a GPU warm")
    article = Article.objects.get()
    assert (article.slug, article.content_type) == ("keeping-a-gpu-warm", "quick_tip")

    page.evaluate("window.notReloaded = true")
    page.get_by_role("button", name="Magic Wand").click()
    card = page.locator("#runs .run")
    expect(card.get_by_test_id("run-status")).to_have_text("Queued")  # the card came in place
    wand_run = GenerationRun.objects.get(article=article)
    assert wand_run.requested_by is not None and wand_run.requested_by.username == "editor"

    # Candidates arrive (as a worker leaves them): the header's count follows, without a reload.
    expect(page.get_by_test_id("header-waiting")).to_have_text("0 waiting")
    make_run(article, count=3, seed=900)
    expect(page.get_by_test_id("header-waiting")).to_have_text("3 waiting", timeout=10_000)
    assert page.evaluate("window.notReloaded") is True


def test_the_list_rows_counts_follow_decisions_made_elsewhere_without_a_reload(page: Page, live_server) -> None:
    editor = make_user("editor", "editors")
    article = Article.objects.create(slug="counted", title="Counted", summary="Live.")
    first, *_ = make_run(article, count=3, seed=40).candidates.all()
    log_in(page, live_server.url)
    expect(page.get_by_test_id("waiting-count")).to_have_text("3 waiting")
    page.evaluate("window.notReloaded = true")

    candidate_review(candidate=first, action="approve", by=editor)  # in another tab, or by another editor
    expect(page.get_by_test_id("waiting-count")).to_have_text("2 waiting", timeout=10_000)
    expect(page.get_by_test_id("approved-count")).to_have_text("1 approved")
    assert page.evaluate("window.notReloaded") is True
