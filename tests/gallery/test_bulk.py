"""Bulk decisions: many candidates in one request, one transaction, one batch, one Undo."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.urls import reverse

from gallery.bulk import BulkInvalid, batch_undo, candidates_decide, seen_from_post
from gallery.ratings import candidate_rate
from gallery.services import candidate_review
from generation.models import Candidate, ReviewEvent
from tests.conftest import make_user
from tests.gallery.test_review import make_run

pytestmark = pytest.mark.django_db


def states(*candidates: Candidate) -> list[str]:
    return [Candidate.objects.get(pk=c.pk).review_status for c in candidates]


def test_a_batch_writes_one_event_each_under_one_batch_id(editor, article) -> None:
    candidates = list(make_run(article, count=4).candidates.all())
    outcome = candidates_decide(seen={c.pk: "pending" for c in candidates}, action="reject", by=editor)

    assert states(*candidates) == ["rejected"] * 4
    assert [c.pk for c in outcome.decided] == [c.pk for c in candidates] and outcome.skipped == []
    events = ReviewEvent.objects.order_by("id")
    assert list(events.values_list("candidate", "action", "from_status", "to_status", "batch")) == [
        (c.pk, "reject", "pending", "rejected", outcome.batch) for c in candidates
    ]


def test_a_candidate_another_editor_approved_meanwhile_is_skipped_and_named(editor, article) -> None:
    candidates = list(make_run(article, count=3, seed=40).candidates.all())
    seen = {c.pk: "pending" for c in candidates}  # what the first editor's page showed
    other = make_user("other-editor", "editors")
    candidate_review(candidate=candidates[1], action="approve", by=other)

    outcome = candidates_decide(seen=seen, action="reject", by=editor)

    assert states(*candidates) == ["rejected", "approved", "rejected"]
    assert [c.pk for c in outcome.decided] == [candidates[0].pk, candidates[2].pk]
    assert [(c.pk, why) for c, why in outcome.skipped] == [(candidates[1].pk, "now approved by other-editor")]
    assert outcome.summary() == "Rejected 2 candidates. Skipped 1: seed 41 (now approved by other-editor)."


def test_one_undo_restores_each_candidate_to_its_state_before_the_batch(editor, article) -> None:
    candidates = list(make_run(article, count=3, seed=70).candidates.all())
    candidate_review(candidate=candidates[0], action="reject", by=editor)
    seen = dict(zip([c.pk for c in candidates], ["rejected", "pending", "pending"], strict=True))
    outcome = candidates_decide(seen=seen, action="approve", by=editor)
    assert states(*candidates) == ["approved"] * 3

    undone = batch_undo(batch=outcome.batch, by=editor)

    assert states(*candidates) == ["rejected", "pending", "pending"]
    assert len(undone.decided) == 3 and undone.skipped == [] and undone.batch != outcome.batch
    assert ReviewEvent.objects.filter(batch=undone.batch).count() == 3


def test_undo_of_a_batch_skips_a_candidate_changed_after_it(editor, article) -> None:
    candidates = list(make_run(article, count=2, seed=90).candidates.all())
    outcome = candidates_decide(seen={c.pk: "pending" for c in candidates}, action="reject", by=editor)
    other = make_user("other-editor", "editors")
    candidate_review(candidate=candidates[0], action="approve", by=other, expected="rejected")

    undone = batch_undo(batch=outcome.batch, by=editor)

    assert states(*candidates) == ["approved", "pending"]
    assert [(c.pk, why) for c, why in undone.skipped] == [(candidates[0].pk, "now approved by other-editor")]


def test_a_batch_is_one_transaction_a_failure_midway_leaves_nothing(editor, article) -> None:
    candidates = list(make_run(article, count=3, seed=20).candidates.all())
    inserts = []

    def fail_third_event(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        # A database failure (disk full, a dropped connection) on the third event's INSERT.
        if sql.startswith('INSERT INTO "generation_reviewevent"'):
            inserts.append(sql)
            if len(inserts) == 3:
                raise OSError("disk full")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail_third_event), pytest.raises(OSError):
        candidates_decide(seen={c.pk: "pending" for c in candidates}, action="reject", by=editor)

    assert states(*candidates) == ["pending"] * 3 and ReviewEvent.objects.count() == 0


def test_bad_input_names_the_field_and_writes_nothing(editor, article) -> None:
    candidate = make_run(article, count=1).candidates.get()
    with pytest.raises(BulkInvalid, match="action"):
        candidates_decide(seen={candidate.pk: "pending"}, action="publish", by=editor)
    with pytest.raises(BulkInvalid, match="candidates"):
        candidates_decide(seen={}, action="reject", by=editor)
    with pytest.raises(BulkInvalid, match="candidates"):
        seen_from_post(["12:pending", "nonsense"])
    with pytest.raises(BulkInvalid, match="batch"):
        batch_undo(batch=uuid.uuid4(), by=editor)
    assert ReviewEvent.objects.count() == 0


def test_the_bulk_view_decides_redirects_with_the_batch_and_offers_one_undo(editor_client, article) -> None:
    candidates = list(make_run(article, count=3, seed=5).candidates.all())
    data = {"action": "reject", "c": [f"{c.pk}:pending" for c in candidates]}
    response = editor_client.post(reverse("gallery:candidates_bulk"), data)

    batch = ReviewEvent.objects.values_list("batch", flat=True).distinct().get()
    assert response.status_code == 302 and response["Location"] == f"{article.get_absolute_url()}?batch={batch}#runs"
    page = editor_client.get(response["Location"]).content.decode()
    assert 'data-testid="bulk-undo"' in page and "Undo these 3 decisions" in page

    response = editor_client.post(reverse("gallery:batch_undo", args=[batch]))
    assert response.status_code == 302 and states(*candidates) == ["pending"] * 3


def test_the_bulk_view_refuses_bad_input_with_the_field_named(editor_client, article) -> None:
    candidate = make_run(article, count=1).candidates.get()
    data = {"action": "nope", "c": f"{candidate.pk}:pending"}
    response = editor_client.post(reverse("gallery:candidates_bulk"), data)
    assert response.status_code == 400 and b"action" in response.content
    assert ReviewEvent.objects.count() == 0


def test_an_onlooker_cannot_decide_in_bulk(client, onlooker, article) -> None:
    candidate = make_run(article, count=1).candidates.get()
    client.force_login(onlooker)
    response = client.post(reverse("gallery:candidates_bulk"), {"action": "reject", "c": f"{candidate.pk}:pending"})
    assert response.status_code == 403 and states(candidate) == ["pending"]


def test_reject_all_not_kept_offers_the_count_on_the_run_and_the_article(editor_client, article) -> None:
    run = make_run(article, count=8, seed=100)
    for candidate in run.candidates.all()[:2]:
        candidate_review(candidate=candidate, action="approve", by=None)
    page = editor_client.get(article.get_absolute_url()).content.decode()
    assert page.count("Reject 6 candidates not kept?") == 2  # the run's card and the article's toolbar


def test_a_rating_batch_rates_any_review_state_and_its_undo_puts_each_rating_back(editor, article) -> None:
    first, second, third = make_run(article, count=3, seed=60).candidates.all()
    candidate_review(candidate=first, action="approve", by=editor)
    candidate_rate(candidate=second, rating=2, by=editor)
    seen = {first.pk: "pending", second.pk: "pending", third.pk: "pending"}  # a rating ignores the state

    outcome = candidates_decide(seen=seen, action="rate", rating=4, by=editor)

    assert list(Candidate.objects.order_by("index").values_list("rating", flat=True)) == [4, 4, 4]
    assert ReviewEvent.objects.filter(batch=outcome.batch, action="rate", rating=4).count() == 3
    candidate_rate(candidate=third, rating=5, by=make_user("other-editor", "editors"))

    undone = batch_undo(batch=outcome.batch, by=editor)

    assert list(Candidate.objects.order_by("index").values_list("rating", flat=True)) == [0, 2, 5]
    assert [(c.pk, why) for c, why in undone.skipped] == [(third.pk, "now rated 5")]
