"""Importing articles from the content pipeline."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from gallery.models import Article, Series
from generation.models import (
    Candidate,
    GenerationRun,
    RequestedVia,
    ReviewEvent,
    candidate_file_name,
    candidate_storage,
)

MAX_REVIEW_REASON_LENGTH = 1000  # ReviewEvent.reason's column

IMPORT_FIELDS = ("slug", "title", "summary", "content_type", "tone", "series")


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: dict[str, list[str]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)


class ImportInvalid(Exception):
    """Bad records, each as (index, field, message). Nothing of the file was written."""

    def __init__(self, problems: list[tuple[int, str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"record {i}: {f}: {m}" for i, f, m in problems))


def _record_problems(index: int, record: Any, seen: dict[str, int]) -> list[tuple[int, str, str]]:
    if not isinstance(record, dict):
        return [(index, "-", f"must be an object, not {type(record).__name__}")]
    problems = [(index, key, "unknown field") for key in record if key not in IMPORT_FIELDS]
    for name in IMPORT_FIELDS:
        if name in record and record[name] is not None and not isinstance(record[name], str):
            problems.append((index, name, f"must be a string, not {type(record[name]).__name__}"))
    if problems:
        return problems
    values = {k: (record.get(k) or "").strip() for k in IMPORT_FIELDS}
    values["content_type"] = values["content_type"] or Article._meta.get_field("content_type").default
    try:
        Article(**values).full_clean(exclude=["hero_candidate"], validate_unique=False)
    except ValidationError as exc:
        problems += [(index, f, " ".join(msgs)) for f, msgs in exc.message_dict.items()]
    slug = values["slug"]
    if slug in seen:
        problems.append((index, "slug", f"duplicates record {seen[slug]}"))
    seen[slug] = index
    return problems


def articles_import(*, records: Any) -> ImportReport:
    """Create or update articles by slug, all or nothing; ``ImportInvalid`` lists every problem."""
    if not isinstance(records, list):
        raise ImportInvalid([(-1, "-", "the file must hold a JSON array of article objects")])
    seen: dict[str, int] = {}
    problems = [p for i, r in enumerate(records) for p in _record_problems(i, r, seen)]
    if problems:
        raise ImportInvalid(problems)
    report = ImportReport()
    with transaction.atomic():
        for record in records:
            values = {k: (record.get(k) or "").strip() for k in IMPORT_FIELDS if k in record}
            article = Article.objects.select_for_update().filter(slug=values["slug"]).first()
            if article is None:
                Article.objects.create(**values)
                report.created.append(values["slug"])
                continue
            changed = [k for k, v in values.items() if getattr(article, k) != v]
            if changed:
                for key in changed:
                    setattr(article, key, values[key])
                article.save()
                report.updated[article.slug] = changed
            else:
                report.unchanged.append(article.slug)
    return report


NOT_FILED = (
    "This image is in the Inbox: file it to an article first, then it can be that article's hero or be published."
)


class ReviewConflict(Exception):
    """Another editor decided first; ``candidate`` holds the state they left."""

    def __init__(self, candidate: Candidate, message: str) -> None:
        self.candidate = candidate
        super().__init__(message)


REVIEW_ACTIONS = {
    ReviewEvent.Action.APPROVE: Candidate.approve,
    ReviewEvent.Action.REJECT: Candidate.reject,
    ReviewEvent.Action.UNDO: Candidate.undo,
}


def candidate_review(
    *,
    candidate: Candidate,
    action: str,
    by: Any,
    expected: str | None = None,
    reason: str = "",
    batch: uuid.UUID | None = None,
) -> ReviewEvent:
    """Approve, reject or undo, and record the decision as an event in the same transaction.
    ``batch`` groups the events of one bulk request (``gallery.bulk``), so one Undo finds them.

    ``expected`` is the state the editor saw; when someone else changed it first, nothing is
    written and ``ReviewConflict`` says what happened. Undoing the hero also clears the hero.
    """
    transition = REVIEW_ACTIONS.get(action)  # type: ignore[call-overload]
    if transition is None:
        raise ValidationError({"action": f"action must be one of {', '.join(REVIEW_ACTIONS)}, not {action!r}."})
    before = expected or candidate.review_status
    with transaction.atomic():
        if not transition(candidate, by, expected=before):
            candidate.refresh_from_db()
            raise ReviewConflict(candidate, _conflict_message(candidate, action))
        event = ReviewEvent.objects.create(
            candidate=candidate,
            actor=by,
            action=action,
            from_status=before,
            to_status=candidate.review_status,
            reason=reason.strip()[:MAX_REVIEW_REASON_LENGTH],
            batch=batch,
        )
        if candidate.review_status != Candidate.Review.APPROVED:
            Article.objects.filter(hero_candidate=candidate).update(hero_candidate=None)
        Article.objects.filter(runs__candidates=candidate).update(updated_at=timezone.now())
    return event


def _conflict_message(candidate: Candidate, action: str) -> str:
    who = f" by {candidate.reviewed_by}" if candidate.reviewed_by else ""
    state = candidate.get_review_status_display().lower()
    verb = {"approve": "approve", "reject": "reject", "undo": "undo"}[action]
    return f"Could not {verb}: this candidate is now {state}{who}. Nothing was changed; look again and decide."


def article_set_hero(*, article: Article, candidate: Candidate, by: Any) -> ReviewEvent:
    """Make an approved candidate of this article its hero, recorded as an event."""
    if candidate.run.article_id is None:
        raise ValidationError({"candidate": NOT_FILED})
    if candidate.run.article_id != article.pk:
        raise ValidationError({"candidate": "That candidate belongs to another article."})
    with transaction.atomic():
        # Lock the candidate's review state for the transaction: no one can reject it meanwhile.
        still_approved = Candidate.objects.select_for_update().filter(
            pk=candidate.pk, review_status__in=[Candidate.Review.APPROVED, Candidate.Review.PUBLISHED]
        )
        if not still_approved.exists():
            candidate.refresh_from_db()
            raise ReviewConflict(candidate, "Only an approved candidate can be the hero; approve it first.")
        Article.objects.filter(pk=article.pk).update(hero_candidate=candidate, updated_at=timezone.now())
        article.hero_candidate = candidate
        series_lock_from_hero(article=article, candidate=candidate)
        return ReviewEvent.objects.create(
            candidate=candidate,
            actor=by,
            action=ReviewEvent.Action.HERO,
            from_status=candidate.review_status,
            to_status=candidate.review_status,
        )


def series_lock_from_hero(*, article: Article, candidate: Candidate) -> bool:
    """The first approved hero of a series sets the series' look (its seed and its run's preset)
    for every later Magic Wand run of the series; True when it did. An editor's choice, or an
    earlier hero's, is kept."""
    if not article.series:
        return False
    series, _ = Series.objects.get_or_create(name=article.series)
    preset_id = GenerationRun.objects.filter(pk=candidate.run_id).values_list("preset_id", flat=True).first()
    return bool(
        Series.objects.filter(pk=series.pk, look_locked=False).update(
            seed=candidate.seed, preset_id=preset_id, look_locked=True
        )
    )


# What a filed run copies from the Inbox run: the recipe, so the image's card tells the truth.
FILED_RECIPE = (
    "preset", "prompt_template", "model_profile", "engine_profile", "prompt", "prompt_source", "prompt_note",
    "prompt_warning", "negative_prompt", "width", "height", "steps", "guidance", "attempts", "worker",
    "started_at", "finished_at",
)  # fmt: skip


FILED_MEANWHILE = "This candidate was filed meanwhile; nothing was changed."


def candidate_file_to_article(*, candidate: Candidate, article: Article, by: Any) -> GenerationRun:
    """Move a candidate of an Inbox run (one with no article) to ``article``, history kept.

    In one transaction: a new succeeded run under the article with the Inbox run as ``parent``
    (``requested_via="filed"``, the same recipe, ``count=1`` at the candidate's own seed), the
    candidate moved to it as index 0, and a ``file`` event. Its earlier events stay, since they
    point at the candidate. ``ValidationError`` names the field when the candidate is not in the
    Inbox (or was filed meanwhile) or the article does not exist; then nothing is written.

    The image file moves too, to the new run's own name (``candidate_file_name``): a file left
    under the Inbox run's folder would be one that run's clean-up (``run_discard_files``, which
    deletes every name its attempts may have written that no row of it points at) deletes. The
    copy is written through the storage API before the row points at it, and the old file is
    deleted only after commit; a filing that fails deletes its copy again, so either way exactly
    one file is left and the row points at it.
    """
    source = candidate.run
    if source.article_id is not None:
        raise ValidationError({"candidate": "Only a candidate in the Inbox can be filed; this one has an article."})
    if article.pk is None or not Article.objects.filter(pk=article.pk).exists():
        raise ValidationError({"article": "No such article: pick one that exists."})
    status = candidate.review_status
    storage = candidate_storage()
    still_there = Candidate.objects.filter(pk=candidate.pk, run=source)
    old_name = still_there.values_list("image", flat=True).first()
    if old_name is None:
        raise ValidationError({"candidate": FILED_MEANWHILE})
    try:
        with storage.open(old_name, "rb") as fh:
            picture = fh.read()
    except FileNotFoundError:
        if not still_there.exists():  # another editor's filing moved the file in this moment
            raise ValidationError({"candidate": FILED_MEANWHILE}) from None
        raise
    copied = ""
    try:
        with transaction.atomic():
            run = GenerationRun.objects.create(
                article=article,
                parent=source,
                requested_by=by if getattr(by, "is_authenticated", False) else None,
                requested_via=RequestedVia.FILED,
                status=GenerationRun.Status.SUCCEEDED,
                count=1,
                base_seed=candidate.seed,
                variation_seed=candidate.variation_seed,
                variation_strength=source.variation_strength if candidate.variation_seed is not None else 0.0,
                progress_step=source.steps,
                progress_total=source.steps,
                **{name: getattr(source, name) for name in FILED_RECIPE},
            )
            new_name = candidate_file_name(run.pk, 0, candidate.seed, attempt=run.attempts or 1)
            copied = storage.save(new_name, ContentFile(picture))
            # Conditional on the candidate still being in that Inbox run: two editors filing it at
            # once cannot both win, and the loser's new run is rolled back with the error.
            moved = Candidate.objects.filter(pk=candidate.pk, run=source).update(run=run, index=0, image=copied)
            if moved != 1:
                raise ValidationError({"candidate": FILED_MEANWHILE})
            ReviewEvent.objects.create(
                candidate=candidate,
                actor=run.requested_by,
                action=ReviewEvent.Action.FILE,
                from_status=status,
                to_status=status,
                reason=f"from Inbox run {source.pk} to “{article.title}”"[:1000],
            )
            Article.objects.filter(pk=article.pk).update(updated_at=timezone.now())
            transaction.on_commit(lambda: storage.delete(old_name))
    except BaseException:
        if copied:
            storage.delete(copied)
        raise
    candidate.refresh_from_db()
    return run
