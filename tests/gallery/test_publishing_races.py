"""Publishing against editors who change their minds, and against itself: a candidate rejected
or undone after the publish was asked for is never published; an unpublish that deletes files
never deletes a key a live publication still uses; one article never has two publishes running.

The thread tests run on SQLite and again on PostgreSQL (scripts/test-postgres.sh), where two
transactions really run at once: that is where the check-then-insert race showed."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from django.conf import settings
from django.db import IntegrityError, connection, transaction

from gallery.models import Publication
from gallery.publishing import PublishConflict, publication_request, publication_run, publication_unpublish
from generation.models import Candidate
from tests.conftest import make_user
from tests.gallery.test_publishing import approved_candidate, empty_publish_folder, publish_now, published_files  # noqa: F401

pytestmark = pytest.mark.django_db

ALT = "A lighthouse of SQLite pages"


def request(candidate: Candidate, editor) -> Publication:  # type: ignore[no-untyped-def]
    return publication_request(candidate=candidate, by=editor, alt_text=ALT, focal=(0.5, 0.5))


@pytest.mark.parametrize("change_of_mind", ["reject", "undo"])
def test_a_candidate_rejected_or_undone_before_the_task_runs_is_never_published(
    article, editor, change_of_mind
) -> None:
    old = publish_now(approved_candidate(article, editor, seed=1), editor)
    before = published_files()
    candidate = approved_candidate(article, editor, seed=2)
    publication = request(candidate, editor)
    other = make_user("bob", "editors")
    assert getattr(candidate, change_of_mind)(other)

    assert publication_run(publication.pk) == "cancelled"

    publication.refresh_from_db()
    article.refresh_from_db()
    candidate.refresh_from_db()
    assert publication.status == Publication.Status.CANCELLED
    expected_state = "rejected" if change_of_mind == "reject" else "pending"
    assert f"is {expected_state}" in publication.error and publication.finished_at is not None
    assert article.hero_candidate_id == old.candidate_id and article.published_urls == old.urls
    assert candidate.review_status == expected_state
    assert published_files() == before  # nothing uploaded for it is left behind


def test_a_reject_while_the_files_upload_cancels_and_removes_what_was_uploaded_for_it(
    article, editor, hooked_publish_storage
) -> None:
    old = publish_now(approved_candidate(article, editor, seed=1), editor)
    before = published_files()
    candidate = approved_candidate(article, editor, seed=2)
    publication = request(candidate, editor)
    bob = make_user("bob", "editors")

    def reject_once(name: str) -> None:  # another editor's click, half-way through the upload
        hooked_publish_storage.before_save = None
        assert Candidate.objects.get(pk=candidate.pk).reject(bob)

    hooked_publish_storage.before_save = reject_once

    assert publication_run(publication.pk) == "cancelled"

    publication.refresh_from_db()
    article.refresh_from_db()
    assert publication.status == Publication.Status.CANCELLED and "rejected" in publication.error
    assert article.hero_candidate_id == old.candidate_id
    assert Candidate.objects.get(pk=candidate.pk).review_status == "rejected"
    assert published_files() == before


@pytest.mark.django_db(transaction=True)
def test_a_reject_racing_the_final_step_either_wins_or_loses_but_never_both(article, editor) -> None:
    """Task and editor meet at a barrier: either the reject lands first (the publication is
    cancelled, the hero unchanged) or the publish does (then the reject is refused, the candidate
    being published). Never a rejected candidate as the live hero."""
    bob = make_user("bob", "editors")
    for round_ in range(4):
        candidate = approved_candidate(article, editor, seed=10 + round_)
        publication = request(candidate, editor)
        barrier = threading.Barrier(2)
        outcome: dict[str, object] = {}

        def publish(pk: int = publication.pk, barrier=barrier, outcome=outcome) -> None:  # type: ignore[no-untyped-def]
            try:
                barrier.wait()
                outcome["task"] = publication_run(pk)
            finally:
                connection.close()

        def reject(pk: int = candidate.pk, barrier=barrier, outcome=outcome) -> None:  # type: ignore[no-untyped-def]
            try:
                barrier.wait()
                outcome["reject"] = Candidate.objects.get(pk=pk).reject(bob)
            finally:
                connection.close()

        threads = [threading.Thread(target=publish), threading.Thread(target=reject)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        candidate.refresh_from_db()
        article.refresh_from_db()
        if outcome["reject"]:
            assert outcome["task"] == "cancelled" and candidate.review_status == "rejected"
            assert article.hero_candidate_id != candidate.pk
        else:
            assert outcome["task"] == "published" and candidate.review_status == "published"
            assert article.hero_candidate_id == candidate.pk
            for row in Publication.objects.get(pk=publication.pk).renditions:
                assert (Path(settings.PUBLISH_DIR) / row["key"]).is_file()


@pytest.mark.django_db(transaction=True)
def test_unpublish_with_delete_during_a_republish_of_the_same_image_keeps_its_files(
    article, editor, hooked_publish_storage
) -> None:
    """The re-publish finds every key already there and uploads nothing; an unpublish-and-delete
    of the live publication runs at that very moment. The keys are in use by a publishing
    publication, so they stay, and the re-published hero's files all exist."""
    candidate = approved_candidate(article, editor)
    first = publish_now(candidate, editor)
    second = request(candidate, editor)
    meet, unpublished = threading.Barrier(2), threading.Event()
    checked: list[str] = []

    def at_last_exists(name: str) -> None:  # every other key was found already there
        checked.append(name)
        if len(checked) < len(first.renditions):
            return
        hooked_publish_storage.before_exists = None
        meet.wait(timeout=30)
        unpublished.wait(timeout=30)  # the unpublish runs to its end (or blocks on our lock)

    hooked_publish_storage.before_exists = at_last_exists
    outcome: dict[str, object] = {}

    def republish() -> None:
        try:
            outcome["task"] = publication_run(second.pk)
        finally:
            connection.close()

    def unpublish_and_delete() -> None:
        try:
            meet.wait(timeout=30)
            outcome["unpublish"] = publication_unpublish(
                publication=Publication.objects.get(pk=first.pk), by=editor, delete_objects=True
            )
        finally:
            unpublished.set()
            connection.close()

    threads = [threading.Thread(target=republish), threading.Thread(target=unpublish_and_delete)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcome == {"task": "published", "unpublish": True}
    second.refresh_from_db()
    article.refresh_from_db()
    assert second.status == Publication.Status.PUBLISHED and article.hero_candidate_id == candidate.pk
    missing = [row["key"] for row in second.renditions if not (Path(settings.PUBLISH_DIR) / row["key"]).is_file()]
    assert missing == []


def test_unpublish_with_delete_keeps_keys_a_publishing_publication_has_claimed(article, editor) -> None:
    candidate = approved_candidate(article, editor)
    first = publish_now(candidate, editor)
    keys = {row["key"] for row in first.renditions}
    second = request(candidate, editor)
    Publication.objects.filter(pk=second.pk).update(renditions=first.renditions)  # as the task records them

    assert publication_unpublish(publication=first, by=editor, delete_objects=True)
    assert keys <= set(published_files())
    second.refresh_from_db()
    assert second.status == Publication.Status.PUBLISHING


@pytest.mark.django_db(transaction=True)
def test_two_publish_requests_at_once_make_one_publication_and_the_other_is_told_why(article, editor) -> None:
    first, second = approved_candidate(article, editor, seed=1), approved_candidate(article, editor, seed=2)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def ask(candidate: Candidate) -> None:
        try:
            barrier.wait()
            request(candidate, editor)
            outcomes.append("queued")
        except PublishConflict as exc:
            outcomes.append("refused: " + str(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=ask, args=(c,)) for c in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(o.split(":")[0] for o in outcomes) == ["queued", "refused"], outcomes
    refusal = next(o for o in outcomes if o.startswith("refused"))
    assert "already being published" in refusal
    assert Publication.objects.filter(article=article).count() == 1


def test_the_database_refuses_a_second_live_publication_of_one_article(article, editor) -> None:
    first = request(approved_candidate(article, editor, seed=1), editor)
    second_candidate = approved_candidate(article, editor, seed=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        Publication.objects.create(article=article, candidate=second_candidate, alt_text="x")
    assert Publication.objects.get().pk == first.pk


def test_a_second_request_for_the_same_image_while_it_publishes_is_refused_too(article, editor) -> None:
    candidate = approved_candidate(article, editor)
    request(candidate, editor)
    with pytest.raises(PublishConflict, match="already being published"):
        request(candidate, editor)
    assert Publication.objects.count() == 1


def test_retry_is_refused_while_another_publish_of_the_article_runs(article, editor) -> None:
    from gallery.publishing import publication_retry

    failed = request(approved_candidate(article, editor, seed=1), editor)
    assert failed.start_attempt() and failed.mark_failed("network down")
    request(approved_candidate(article, editor, seed=2), editor)
    with pytest.raises(PublishConflict, match="already being published"):
        publication_retry(publication=failed)
    failed.refresh_from_db()
    assert failed.status == Publication.Status.FAILED


def test_the_api_answers_409_to_a_second_publish_of_one_article(article, editor) -> None:
    from api.models import ApiToken
    from tests.api.conftest import ApiClient, api_user

    _row, value = ApiToken.issue(user=api_user("pipeline", "editors"), name="tests")
    api = ApiClient(value)
    first, second = approved_candidate(article, editor, seed=1), approved_candidate(article, editor, seed=2)
    assert api.post(f"/api/v1/candidates/{first.pk}/publish", {"alt_text": ALT}).status_code == 202
    response = api.post(f"/api/v1/candidates/{second.pk}/publish", {"alt_text": ALT})
    assert response.status_code == 409, response.content
    body = response.json()
    assert "already being published" in str(body)
    assert Publication.objects.count() == 1


def test_the_article_page_shows_the_live_hero_with_its_snippet_beside_a_newer_cancelled_publish(
    article, editor, editor_client
) -> None:
    live = publish_now(approved_candidate(article, editor, seed=1), editor)
    candidate = approved_candidate(article, editor, seed=2)
    cancelled = request(candidate, editor)
    assert candidate.reject(editor)
    assert publication_run(cancelled.pk) == "cancelled"

    page = editor_client.get(article.get_absolute_url()).content.decode()
    assert f'id="publication-{live.pk}"' in page and f'id="publication-{cancelled.pk}"' in page
    assert "so it was not published; the article keeps its hero" in page
    assert live.urls["hero.jpg"] in page and "&lt;picture&gt;" in page  # the live card's snippet
