"""The Inbox: runs without an article (made through the image APIs) listed, reviewed, compared,
regenerated and filed to an article, with their history kept; hero and publish wait for filing."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from api.models import ApiToken
from gallery.models import Article, Publication
from gallery.services import candidate_file_to_article
from generation.models import (
    Candidate,
    GenerationRun,
    RequestedVia,
    ReviewEvent,
    candidate_file_name,
    candidate_storage,
)
from generation.services import run_discard_files, run_submit
from tests.conftest import wait_finished

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def inbox_run(
    user, count: int = 2, seed: int = 10, size: int = 64, minutes_ago: int = 0, variation: bool = False
) -> GenerationRun:  # type: ignore[no-untyped-def]
    """A succeeded article-less run with real PNGs, as the worker leaves one asked for through
    the AUTOMATIC1111 API with a named token."""
    token, _ = ApiToken.issue(user=user, name="open-webui")
    run = GenerationRun.objects.create(
        article=None, model_profile="tiny-sd", engine_profile="tiny-sd", prompt=f"a lighthouse {seed}",
        negative_prompt="blurry", width=size, height=size, steps=2, guidance=1.0, base_seed=seed, count=count,
        variation_seed=500 if variation else None, variation_strength=0.3 if variation else 0.0,
        status=GenerationRun.Status.SUCCEEDED, requested_via=RequestedVia.A1111, api_token=token,
        client_fields={"sampler_name": "Euler a"}, queued_at=timezone.now() - timedelta(minutes=minutes_ago),
        started_at=timezone.now(), finished_at=timezone.now(), attempts=1, requested_by=user,
    )  # fmt: skip
    for index in range(count):
        buffer = io.BytesIO()
        Image.new("RGB", (size, size), (seed % 256, index * 40, 120)).save(buffer, format="PNG")
        data = buffer.getvalue()
        name = candidate_storage().save(f"runs/{run.pk:06d}/{index:02d}-seed{seed + index}.png", ContentFile(data))
        Candidate.objects.create(
            run=run, index=index, seed=seed if variation else seed + index, image=name, width=size, height=size,
            sha256=hashlib.sha256(data).hexdigest(), variation_seed=500 + index if variation else None,
        )  # fmt: skip
    return run


def review(client, candidate: Candidate, action: str, expected: str):  # type: ignore[no-untyped-def]
    url = reverse("gallery:candidate_review", args=[candidate.pk])
    return client.post(url, {"action": action, "expected": expected}, headers=HTMX)


def file_to(client, candidate: Candidate, slug: str):  # type: ignore[no-untyped-def]
    return client.post(reverse("gallery:candidate_file", args=[candidate.pk]), {"article": slug})


def test_the_inbox_lists_article_less_runs_newest_first_with_door_token_and_client_fields(
    editor_client, editor, article, django_assert_max_num_queries
) -> None:
    older = inbox_run(editor, seed=10, minutes_ago=5)
    newer = inbox_run(editor, seed=20)
    with django_assert_max_num_queries(8):  # the same for one run or twenty: no query per run
        body = editor_client.get(reverse("gallery:inbox")).content.decode()
    assert body.index(f'id="run-{newer.pk}"') < body.index(f'id="run-{older.pk}"')
    prefix = ApiToken.objects.get(runs=newer).prefix
    assert "AUTOMATIC1111 API" in body and "open-webui" in body and f"{prefix}…" in body
    assert "sampler_name" in body and "Euler a" in body and "(recorded, not used)" in body
    assert body.count("data-candidate ") == 4 and ">Approve</button>" in body
    assert "File to article…" in body and "Make hero" not in body and "Publish…" not in body
    assert 'href="/inbox/"' in body  # the header's link


def test_inbox_runs_are_on_no_article_page_and_article_runs_not_in_the_inbox(editor_client, editor, article) -> None:
    inbox = inbox_run(editor)
    run_submit(article=article, prompt="an article's own run", model="tiny-sd", requested_by=editor)
    article_page = editor_client.get(article.get_absolute_url()).content.decode()
    inbox_page = editor_client.get(reverse("gallery:inbox")).content.decode()
    assert f'id="run-{inbox.pk}"' not in article_page and "an article&#x27;s own run" not in inbox_page
    assert "an article's own run" in article_page or "an article&#x27;s own run" in article_page
    assert f'id="run-{inbox.pk}"' in inbox_page


def test_the_inbox_is_paginated(editor_client, editor, monkeypatch) -> None:
    from gallery import views

    for seed in range(3):
        inbox_run(editor, count=1, seed=seed, minutes_ago=seed)
    monkeypatch.setattr(views, "INBOX_RUNS_PER_PAGE", 2)
    first = editor_client.get(reverse("gallery:inbox")).content.decode()
    second = editor_client.get(reverse("gallery:inbox") + "?page=2").content.decode()
    assert first.count('class="run card') == 2 and "Page 1 of 2" in first
    assert second.count('class="run card') == 1 and "seed 2" in second


def test_inbox_candidates_are_reviewed_viewed_and_compared_like_any_other(editor_client, editor) -> None:
    first, second = inbox_run(editor).candidates.all()
    response = review(editor_client, first, "approve", "pending")
    assert response.status_code == 200 and "Approved" in response.content.decode()
    assert "File to article…" in response.content.decode() and "Make hero" not in response.content.decode()
    assert review(editor_client, second, "reject", "pending").status_code == 200
    assert review(editor_client, second, "undo", "rejected").status_code == 200
    assert [e.action for e in ReviewEvent.objects.order_by("pk")] == ["approve", "reject", "undo"]
    detail = editor_client.get(reverse("gallery:candidate_detail", args=[first.pk]))
    assert detail.status_code == 200 and 'data-testid="file-form"' in detail.content.decode()
    lightbox = editor_client.get(reverse("gallery:candidate_detail", args=[first.pk]), headers=HTMX)
    assert 'data-testid="file-form"' in lightbox.content.decode()
    image = editor_client.get(reverse("gallery:candidate_image", args=[first.pk]) + "?download=1")
    assert image.status_code == 200 and "inbox-run" in image["Content-Disposition"]
    compare = editor_client.get(reverse("gallery:inbox_compare") + f"?c={first.pk}&c={second.pk}")
    assert compare.status_code == 200 and "Inbox" in compare.content.decode()
    # Without htmx a decision goes back to the Inbox, not to a missing article.
    plain = editor_client.post(reverse("gallery:candidate_review", args=[first.pk]), {"action": "undo"})
    assert plain.status_code == 302 and plain["Location"] == f"/inbox/#candidate-{first.pk}"


def test_a_polled_inbox_run_card_and_its_cancel_stay_in_the_inbox(editor_client, editor) -> None:
    run = run_submit(article=None, prompt="a queued lighthouse", model="tiny-sd", requested_by=editor)
    card = editor_client.get(reverse("gallery:run_card", args=[run.pk]), headers=HTMX)
    assert card.status_code == 200 and "Queued" in card.content.decode()
    response = editor_client.post(reverse("gallery:run_cancel", args=[run.pk]))
    assert response.status_code == 302 and response["Location"] == f"/inbox/#run-{run.pk}"
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.CANCELLED


def test_regenerating_an_inbox_candidate_makes_a_new_inbox_run(editor_client, editor) -> None:
    source = inbox_run(editor)
    candidate = source.candidates.first()
    assert candidate is not None
    page = editor_client.get(reverse("gallery:candidate_regenerate", args=[candidate.pk]))
    assert page.status_code == 200 and "Inbox" in page.content.decode()
    response = editor_client.post(
        reverse("gallery:candidate_regenerate", args=[candidate.pk]), {"mode": "compose", "count": "1"}
    )
    new = GenerationRun.objects.exclude(pk=source.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/inbox/#run-{new.pk}"
    assert new.article is None and new.parent == source and new.base_seed == candidate.seed


def test_filing_moves_the_candidate_to_the_article_with_its_history(editor_client, editor, article) -> None:
    source = inbox_run(editor, count=2, seed=40)
    first, second = source.candidates.all()
    review(editor_client, first, "approve", "pending")
    response = file_to(editor_client, first, article.slug)
    assert response.status_code == 302 and response["Location"] == f"{article.get_absolute_url()}#candidate-{first.pk}"

    first.refresh_from_db()
    filed = first.run
    assert filed.article == article and filed.parent == source and filed.requested_via == "filed"
    assert (filed.count, filed.base_seed, first.index) == (1, 40, 0) and filed.status == "succeeded"
    assert (filed.prompt, filed.negative_prompt, filed.model_profile, filed.steps) == (
        source.prompt, "blurry", "tiny-sd", 2
    )  # fmt: skip
    assert first.review_status == "approved"  # the decision came along
    assert [e.action for e in first.events.order_by("pk")] == ["approve", "file"]

    page = editor_client.get(article.get_absolute_url()).content.decode()
    assert f'id="candidate-{first.pk}"' in page and "Filed from" in page and "Make hero" in page
    listing = editor_client.get(reverse("gallery:article_list")).content.decode()
    assert "1 approved" in listing  # the article's counts include the filed candidate
    inbox = editor_client.get(reverse("gallery:inbox")).content.decode()
    assert f'id="candidate-{first.pk}"' not in inbox and f'id="candidate-{second.pk}"' in inbox
    assert "Filed: seed 40 to" in inbox


def test_filing_a_variation_keeps_its_variation_seed_and_strength(editor, article) -> None:
    candidate = inbox_run(editor, count=2, variation=True).candidates.get(index=1)
    run = candidate_file_to_article(candidate=candidate, article=article, by=editor)
    assert (run.base_seed, run.variation_seed, run.variation_strength) == (10, 501, 0.3)
    assert run.is_variation and run.variation_seeds == [501]


def test_a_filed_candidates_file_moves_to_its_new_run_and_survives_the_inbox_runs_clean_up(
    editor, article, django_capture_on_commit_callbacks
) -> None:
    """The file belongs to the run the candidate is filed under: a full clean-up of the Inbox run
    (what a cancel or recovery does) or deleting that run must not take the filed image along."""
    source = inbox_run(editor, count=2, seed=40)
    first, second = source.candidates.order_by("index")
    old_name, storage = str(first.image.name), candidate_storage()
    with storage.open(old_name, "rb") as fh:
        picture = fh.read()

    with django_capture_on_commit_callbacks(execute=True):
        filed = candidate_file_to_article(candidate=first, article=article, by=editor)

    first.refresh_from_db()
    assert str(first.image.name) == candidate_file_name(filed.pk, 0, 40)  # under its new run's folder
    with storage.open(str(first.image.name), "rb") as fh:
        assert fh.read() == picture and hashlib.sha256(picture).hexdigest() == first.sha256
    assert not storage.exists(old_name)  # moved, not copied: no second copy left in the Inbox run

    run_discard_files(run=source)  # every name the Inbox run's attempts may have written
    with django_capture_on_commit_callbacks(execute=True):
        source.delete()
    assert storage.exists(str(first.image.name))
    assert not storage.exists(str(second.image.name))  # the Inbox run's own candidate went with it


def test_a_filing_that_loses_the_race_leaves_one_file_where_the_winner_put_it(
    editor, article, django_capture_on_commit_callbacks
) -> None:
    """Two editors file the same candidate: the loser is told so, and no copy of its is left."""
    candidate = inbox_run(editor, count=1, seed=40).candidates.get()
    stale = Candidate.objects.get(pk=candidate.pk)
    with django_capture_on_commit_callbacks(execute=True):
        candidate_file_to_article(candidate=candidate, article=article, by=editor)
    candidate.refresh_from_db()
    with pytest.raises(ValidationError, match="filed meanwhile"), django_capture_on_commit_callbacks(execute=True):
        candidate_file_to_article(candidate=stale, article=article, by=editor)
    storage = candidate_storage()
    assert storage.exists(str(candidate.image.name))
    folders = {name.split("/")[1] for name in _all_files(storage, "runs")}
    assert folders == {f"{candidate.run_id:06d}"}  # the loser's run was rolled back, its copy deleted


def _all_files(storage, folder: str) -> list[str]:  # type: ignore[no-untyped-def]
    subfolders, files = storage.listdir(folder)
    return [f"{folder}/{f}" for f in files] + [n for sub in subfolders for n in _all_files(storage, f"{folder}/{sub}")]


def test_a_run_whose_candidates_are_all_filed_leaves_the_inbox(editor_client, editor, article) -> None:
    source = inbox_run(editor, count=2)
    for candidate in list(source.candidates.all()):
        candidate_file_to_article(candidate=candidate, article=article, by=editor)
    inbox = editor_client.get(reverse("gallery:inbox")).content.decode()
    assert f'id="run-{source.pk}"' not in inbox and "The Inbox is empty" in inbox


def test_filing_to_an_unknown_article_or_from_outside_the_inbox_is_refused_and_writes_nothing(
    editor_client, editor, article
) -> None:
    candidate = inbox_run(editor).candidates.first()
    assert candidate is not None
    runs_before = GenerationRun.objects.count()
    response = file_to(editor_client, candidate, "no-such-article")
    assert response.status_code == 400 and "No article has that slug" in response.content.decode()
    with pytest.raises(Exception) as unknown:
        candidate_file_to_article(candidate=candidate, article=Article(slug="unsaved", title="x"), by=editor)
    assert "article" in unknown.value.message_dict  # type: ignore[attr-defined]

    candidate_file_to_article(candidate=candidate, article=article, by=editor)
    runs_after_filing = GenerationRun.objects.count()
    candidate.refresh_from_db()
    response = file_to(editor_client, candidate, article.slug)
    assert response.status_code == 400 and "Only a candidate in the Inbox" in response.content.decode()
    assert GenerationRun.objects.count() == runs_after_filing == runs_before + 1
    assert candidate.events.filter(action="file").count() == 1


def test_filing_needs_an_editor(client, onlooker, editor) -> None:
    candidate = inbox_run(editor).candidates.first()
    assert candidate is not None
    client.force_login(onlooker)
    assert client.post(reverse("gallery:candidate_file", args=[candidate.pk]), {"article": "x"}).status_code == 403
    page = client.get(reverse("gallery:candidate_detail", args=[candidate.pk])).content.decode()
    assert 'data-testid="file-form"' not in page and "not filed to an article yet" in page


def test_an_unfiled_candidate_cannot_be_hero_or_published_and_says_why(editor_client, editor) -> None:
    candidate = inbox_run(editor, size=64).candidates.first()
    assert candidate is not None
    review(editor_client, candidate, "approve", "pending")
    hero = editor_client.post(reverse("gallery:candidate_hero", args=[candidate.pk]), follow=True)
    assert hero.status_code == 200 and "file it to an article first" in hero.content.decode()
    publish = editor_client.get(reverse("gallery:candidate_publish", args=[candidate.pk]), follow=True)
    assert publish.status_code == 200 and "file it to an article first" in publish.content.decode()
    posted = editor_client.post(reverse("gallery:candidate_publish", args=[candidate.pk]), {"alt_text": "A lamp"})
    assert posted.status_code == 302
    assert not Publication.objects.exists() and not Article.objects.filter(hero_candidate=candidate).exists()
    assert not candidate.events.filter(action="hero").exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_makes_an_article_less_run_whose_candidates_land_in_the_inbox(
    start_worker, client, editor
) -> None:
    worker = start_worker()
    run = run_submit(
        article=None, prompt="a lighthouse at dusk", model="tiny-sd", width=64, height=64, steps=2, count=2,
        requested_by=editor, requested_via=RequestedVia.OPENAI, client_fields={"user": "sillytavern"},
    )  # fmt: skip
    wait_finished(run, worker=worker)
    assert run.status == GenerationRun.Status.SUCCEEDED, run.error
    assert run.article is None and run.candidates.count() == 2
    client.force_login(editor)
    body = client.get(reverse("gallery:inbox")).content.decode()
    assert f'id="run-{run.pk}"' in body and body.count("data-candidate ") == 2 and "OpenAI Images API" in body


@pytest.mark.browser
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_editor_approves_and_files_an_inbox_image_in_the_browser(page, live_server, start_worker) -> None:  # type: ignore[no-untyped-def]
    """Debian's Chromium against a live server and a real qcluster: the Inbox shows the API's
    run, the keyboard approves a candidate, the full view files it. Saves docs/inbox.png (for
    docs/integrations.md) and phone-width shots in /tmp for a person to look at."""
    from playwright.sync_api import expect

    from tests.conftest import ROOT, make_user

    editor = make_user("editor", "editors")
    article = Article.objects.create(slug="sqlite-wal", title="SQLite WAL under load", summary="Readers never wait.")
    token, _ = ApiToken.issue(user=editor, name="open-webui")
    worker = start_worker()
    run = run_submit(
        article=None, prompt="a lighthouse at dusk, oil painting", model="tiny-sd", width=128, height=128, steps=2,
        count=3, requested_by=editor, requested_via=RequestedVia.A1111, api_token=token,
        client_fields={"sampler_name": "Euler a"},
    )  # fmt: skip
    wait_finished(run, worker=worker)
    assert run.status == GenerationRun.Status.SUCCEEDED, run.error
    first = run.candidates.get(index=0)

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/login/?next=/inbox/")
    page.get_by_label("Username").fill("editor")
    page.get_by_label("Password").fill("editor-pass-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("run-door")).to_contain_text("AUTOMATIC1111 API")
    expect(page.get_by_test_id("run-door")).to_contain_text("open-webui")
    expect(page.locator("[data-candidate]")).to_have_count(3)

    page.keyboard.press("ArrowRight")  # focuses the first tile; review.js as on an article page
    page.keyboard.press("a")
    expect(page.locator(f"#candidate-{first.pk} [data-testid=review-state]")).to_have_text("Approved")
    page.locator("body").click(position={"x": 5, "y": 5})  # no focus ring in the screenshot
    (ROOT / "docs").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "docs" / "inbox.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path="/tmp/hoffdesk-inbox-390.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    page.locator(f"#candidate-{first.pk}").get_by_role("link", name="File to article…").click()
    expect(page.get_by_test_id("file-form")).to_be_visible()
    page.screenshot(path="/tmp/hoffdesk-file-1280.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path="/tmp/hoffdesk-file-390.png", full_page=True)
    page.get_by_label("Article").fill("sqlite-wal")
    page.get_by_role("button", name="File", exact=True).click()

    expect(page).to_have_url(f"{live_server.url}{article.get_absolute_url()}#candidate-{first.pk}")
    expect(page.locator(".messages")).to_contain_text("is now a candidate of “SQLite WAL under load”")
    expect(page.locator(f"#candidate-{first.pk} [data-testid=review-state]")).to_have_text("Approved")
    expect(page.get_by_test_id("run-parent")).to_contain_text(f"Filed from Inbox run {run.pk}")
    page.screenshot(path="/tmp/hoffdesk-filed-1280.png", full_page=True)
    page.goto(f"{live_server.url}/inbox/")
    expect(page.get_by_test_id("run-filed")).to_contain_text("to SQLite WAL under load")
    expect(page.locator("[data-candidate]")).to_have_count(2)
