"""Issue 20, part 3: a review policy per preset. Manual (the default) leaves every candidate to an
editor; auto-approve approves the first candidate of each run; auto-publish approves it and
publishes it after the preset's grace period unless an editor presses Stop. Review events name
the policy as the actor. Time is moved forward by passing ``now`` to the scheduled job (the
job the light cluster runs every minute), never by sleeping.

The runs are made in this process by the worker's own task on the tiny stand-ins."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from gallery.models import Article, Publication
from gallery.policies import candidates_auto_publish_due
from gallery.publishing import publication_run
from gallery.wand import article_wand
from generation import tasks
from generation.models import Candidate, GenerationRun, ReviewEvent, StylePreset
from tests.gallery.test_publishing import empty_publish_folder  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("migration_data"), pytest.mark.slow]

Policy = StylePreset.ReviewPolicy


def policy_preset(policy: str, grace: int = 30) -> StylePreset:
    # FLUX (its tiny stand-in here) makes 1216x640 directly, which the publish page accepts; 1 step.
    return StylePreset.objects.create(
        name=f"p-{policy}", slug=f"p-{policy}", model_profile="flux-dev-nf4", review_policy=policy,
        review_grace_minutes=grace, steps=1, width=1216, height=640,
    )  # fmt: skip


def made(run: GenerationRun) -> GenerationRun:
    assert tasks.run_generate(run.pk) == "succeeded", GenerationRun.objects.get(pk=run.pk).error
    run.refresh_from_db()
    return run


def wand(article: Article, editor, preset: StylePreset, count: int = 2) -> GenerationRun:  # type: ignore[no-untyped-def]
    return made(article_wand(article=article, requested_by=editor, preset=preset.slug, count=count))


def test_manual_is_the_default_and_decides_nothing(article, editor) -> None:
    preset = StylePreset.objects.create(
        name="plain", slug="plain", model_profile="tiny-sd", steps=1, width=64, height=64
    )
    assert preset.review_policy == Policy.MANUAL
    run = wand(article, editor, preset, count=2)
    assert set(run.candidates.values_list("review_status", flat=True)) == {Candidate.Review.PENDING}
    assert not ReviewEvent.objects.exists()


def test_auto_approve_approves_exactly_one_candidate_per_run_and_the_event_names_the_policy(article, editor) -> None:
    preset = policy_preset(Policy.AUTO_APPROVE)
    first = wand(article, editor, preset)
    second = wand(article, editor, preset)
    for run in (first, second):
        approved = run.candidates.filter(review_status=Candidate.Review.APPROVED)
        assert list(approved.values_list("index", flat=True)) == [0]
        assert run.candidates.filter(review_status=Candidate.Review.PENDING).count() == 1
        assert approved.get().auto_publish_at is None  # approve only: nothing scheduled
    events = ReviewEvent.objects.order_by("at", "id")
    assert [(e.action, e.policy, e.actor_id) for e in events] == [("approve", "auto_approve", None)] * 2


def test_auto_publish_publishes_after_the_grace_period_and_not_before(article, editor) -> None:
    preset = policy_preset(Policy.AUTO_PUBLISH, grace=30)
    run = wand(article, editor, preset)
    chosen = run.candidates.get(review_status=Candidate.Review.APPROVED)
    assert chosen.index == 0 and chosen.auto_publish_at is not None
    assert timedelta(minutes=29) < chosen.auto_publish_at - timezone.now() <= timedelta(minutes=30)

    assert candidates_auto_publish_due(now=chosen.auto_publish_at - timedelta(seconds=1)) == []
    assert not Publication.objects.exists()

    assert candidates_auto_publish_due(now=chosen.auto_publish_at + timedelta(seconds=1)) == [chosen.pk]
    publication = Publication.objects.get()
    assert publication.candidate_id == chosen.pk and publication.alt_text
    assert publication_run(publication.pk) == "published", Publication.objects.get(pk=publication.pk).error
    article.refresh_from_db()
    assert article.hero_candidate_id == chosen.pk
    chosen.refresh_from_db()
    assert chosen.auto_publish_at is None
    # Once is enough: the next minute's job finds nothing more to do.
    assert candidates_auto_publish_due(now=timezone.now() + timedelta(hours=1)) == []
    assert Publication.objects.count() == 1


def test_stop_on_the_article_page_keeps_it_from_going_public(article, editor, editor_client) -> None:
    preset = policy_preset(Policy.AUTO_PUBLISH, grace=30)
    chosen = wand(article, editor, preset, count=1).candidates.get()
    page = editor_client.get(f"/articles/{article.slug}/").content.decode()
    at = timezone.localtime(chosen.auto_publish_at)
    assert f"Publishes at {at:%H:%M}" in page and 'data-testid="stop-auto-publish"' in page

    assert "the review policy (auto-publish)</strong> approved" in page  # the history names the policy

    response = editor_client.post(f"/candidates/{chosen.pk}/stop-auto-publish/")
    assert response.status_code in (200, 302)
    assert candidates_auto_publish_due(now=timezone.now() + timedelta(hours=1)) == []
    assert not Publication.objects.exists()
    chosen.refresh_from_db()
    assert chosen.auto_publish_at is None and chosen.review_status == Candidate.Review.APPROVED
    assert "Publishes at" not in editor_client.get(f"/articles/{article.slug}/").content.decode()


def test_a_candidate_rejected_during_the_grace_period_is_not_published(article, editor) -> None:
    chosen = wand(article, editor, policy_preset(Policy.AUTO_PUBLISH), count=1).candidates.get()
    assert chosen.reject(editor)
    assert candidates_auto_publish_due(now=timezone.now() + timedelta(hours=1)) == []
    assert not Publication.objects.exists()


def test_generate_heroes_with_an_auto_publish_style_makes_a_hero_nobody_touched(article, editor) -> None:
    """The owner's batch: a scheduled post gets its hero with no one at the dashboard, with the
    human veto kept for the grace period. The command queues; the worker's task runs here."""
    preset = policy_preset(Policy.AUTO_PUBLISH, grace=5)
    StylePreset.objects.filter(pk=preset.pk).update(image_style=True)
    call_command("generate_heroes", "--missing", "--style", preset.slug, "--count", "1")
    run = made(GenerationRun.objects.get(article=article))
    chosen = run.candidates.get()
    assert chosen.review_status == Candidate.Review.APPROVED
    [published] = candidates_auto_publish_due(now=timezone.now() + timedelta(minutes=6))
    assert published == chosen.pk
    assert publication_run(Publication.objects.get().pk) == "published"
    assert ReviewEvent.objects.filter(candidate=chosen, policy="auto_publish", action="approve").exists()


def test_an_auto_publish_the_publish_checks_refuse_is_said_on_the_article_page(article, editor, editor_client) -> None:
    preset = policy_preset(Policy.AUTO_PUBLISH)
    StylePreset.objects.filter(pk=preset.pk).update(width=512, height=512)  # below hero size
    chosen = wand(article, editor, StylePreset.objects.get(pk=preset.pk), count=1).candidates.get()
    assert candidates_auto_publish_due(now=timezone.now() + timedelta(hours=1)) == []
    assert not Publication.objects.exists()
    page = editor_client.get(f"/articles/{article.slug}/").content.decode()
    assert 'data-testid="auto-publish-refused"' in page and "the hero needs at least 1200x630" in page
    chosen.refresh_from_db()
    assert chosen.review_status == Candidate.Review.APPROVED  # left for an editor to enlarge and publish
