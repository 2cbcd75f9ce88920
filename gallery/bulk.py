"""Bulk decisions: approve, reject or rate many candidates in one request.

A photo editor culls hundreds of images a day, so a survey ends with one action over a
selection ("reject every one I did not keep"). Each candidate still goes through the single
decision's rules (``gallery.services.candidate_review``: the model's conditional UPDATE, one
event each, the hero cleared), all inside one transaction, and the events share one ``batch``
UUID so one Undo can find them again. The request carries the state the editor saw of each
candidate, as a single decision does: one another editor changed meanwhile is skipped and
named, and the rest still apply.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from gallery.models import Article
from gallery.ratings import MAX_RATING, candidate_rate
from gallery.services import REVIEW_ACTIONS, ReviewConflict, candidate_review
from generation.models import Candidate, ReviewEvent

MAX_BATCH = 1000  # a request's candidates: one article page holds at most a few hundred
BULK_ACTIONS = {"approve": "Approved", "reject": "Rejected", "rate": "Rated"}
# Undo puts a candidate back where the batch found it: the transition that leads to each state.
RESTORE_ACTIONS = {
    Candidate.Review.PENDING: ReviewEvent.Action.UNDO,
    Candidate.Review.APPROVED: ReviewEvent.Action.APPROVE,
    Candidate.Review.REJECTED: ReviewEvent.Action.REJECT,
}


class BulkInvalid(ValueError):
    """Bad input, naming the field (``action``, ``candidates``, ``rating``, ``batch``); nothing was written."""

    def __init__(self, field_name: str, message: str) -> None:
        self.field = field_name
        super().__init__(f"{field_name}: {message}")


@dataclass
class BulkOutcome:
    """What one bulk request did: its batch, the candidates decided, and those skipped with why."""

    batch: uuid.UUID
    verb: str
    decided: list[Candidate] = field(default_factory=list)
    skipped: list[tuple[Candidate, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One sentence for the editor: how many, and each skipped one by seed with the reason."""
        n = len(self.decided)
        text = f"{self.verb} {n} candidate{'' if n == 1 else 's'}."
        if self.skipped:
            reasons = "; ".join(f"seed {c.seed} ({why})" for c, why in self.skipped)
            text += f" Skipped {len(self.skipped)}: {reasons}."
        return text


def seen_from_post(values: list[str]) -> dict[int, str]:
    """``["12:pending", ...]`` (candidate id, the state the editor saw) as a dict."""
    seen: dict[int, str] = {}
    for value in values:
        pk, _, state = value.partition(":")
        if not pk.isdigit() or state not in Candidate.Review.values:
            raise BulkInvalid("candidates", f"each must be id:state, like 12:pending, not {value[:40]!r}.")
        seen[int(pk)] = state
    return seen


def _why(candidate: Candidate) -> str:
    who = f" by {candidate.reviewed_by}" if candidate.reviewed_by_id else ""
    return f"now {candidate.get_review_status_display().lower()}{who}"


def _checked(seen: Mapping[int, str], action: str, rating: int | None) -> None:
    if action not in BULK_ACTIONS:
        raise BulkInvalid("action", f"must be one of {', '.join(BULK_ACTIONS)}, not {action[:40]!r}.")
    if not seen:
        raise BulkInvalid("candidates", "select at least one candidate.")
    if len(seen) > MAX_BATCH:
        raise BulkInvalid("candidates", f"at most {MAX_BATCH} in one request, not {len(seen)}.")
    if action == "rate" and (rating is None or not 0 <= rating <= MAX_RATING):
        raise BulkInvalid("rating", f"a rating is a whole number from 0 to {MAX_RATING}.")


def candidates_decide(
    *, seen: Mapping[int, str], action: str, by: Any, rating: int | None = None, reason: str = ""
) -> BulkOutcome:
    """Approve, reject or rate the candidates in ``seen`` (id -> the state the editor saw), in
    one transaction under one batch id. A candidate whose state changed since, that is gone,
    or that this action cannot apply to (a published one) is skipped with the reason."""
    _checked(seen, action, rating)
    outcome = BulkOutcome(batch=uuid.uuid4(), verb=BULK_ACTIONS[action])
    found = Candidate.objects.select_related("reviewed_by").in_bulk(list(seen))
    with transaction.atomic():
        for pk, expected in seen.items():
            candidate = found.get(pk)
            if candidate is None:
                continue  # deleted with its run meanwhile: nothing to decide, nothing to name
            if action == "rate":  # a rating is no decision: it applies over any review state
                _rate(candidate, rating or 0, by, outcome)
                continue
            try:
                candidate_review(
                    candidate=candidate, action=action, by=by, expected=expected, reason=reason, batch=outcome.batch
                )
            except ReviewConflict as exc:
                outcome.skipped.append((exc.candidate, _why(exc.candidate)))
            else:
                outcome.decided.append(candidate)
    return outcome


def _rate(candidate: Candidate, rating: int, by: Any, outcome: BulkOutcome, *, only_from: int | None = None) -> None:
    """A rating through ``candidate_rate`` (its rules: any review state, no event when unchanged),
    its event joined to the batch with the rating it replaced, so the batch's Undo can put it
    back. ``only_from``: skip the candidate unless its rating is still that (an Undo's check)."""
    candidate.refresh_from_db(fields=["rating", "review_status", "reviewed_by"])
    before = candidate.rating
    if only_from is not None and before != only_from:
        outcome.skipped.append((candidate, f"now rated {before}"))
        return
    event = candidate_rate(candidate=candidate, rating=rating, by=by)
    if event is not None:
        ReviewEvent.objects.filter(pk=event.pk).update(batch=outcome.batch, reason=f"was {before}")
    outcome.decided.append(candidate)


def batch_undo(*, batch: uuid.UUID, by: Any) -> BulkOutcome:
    """Put every candidate of a batch back in the state it had before, in one transaction and
    under a new batch id. One changed since the batch is skipped and named."""
    events = list(ReviewEvent.objects.filter(batch=batch).select_related("candidate__reviewed_by").order_by("id"))
    if not events:
        raise BulkInvalid("batch", "no decisions were made under this batch (or it was deleted).")
    outcome = BulkOutcome(batch=uuid.uuid4(), verb="Restored")
    with transaction.atomic():
        for event in events:
            if event.action == ReviewEvent.Action.RATE:
                _rate(event.candidate, _rating_before(event), by, outcome, only_from=event.rating)
                continue
            action = RESTORE_ACTIONS.get(event.from_status)  # type: ignore[call-overload]
            if action not in REVIEW_ACTIONS:
                continue
            try:
                candidate_review(
                    candidate=event.candidate,
                    action=action,
                    by=by,
                    expected=event.to_status,
                    reason="undo of a bulk decision",
                    batch=outcome.batch,
                )
            except ReviewConflict as exc:
                outcome.skipped.append((exc.candidate, _why(exc.candidate)))
            else:
                outcome.decided.append(event.candidate)
        Article.objects.filter(runs__candidates__events__batch=batch).update(updated_at=timezone.now())
    return outcome


def _rating_before(event: ReviewEvent) -> int:
    """A ``rate`` event of a batch keeps the rating it replaced in its reason (``was N``)."""
    before = event.reason.removeprefix("was ")
    return int(before) if before.isdigit() else 0


def batch_size(*, batch: uuid.UUID) -> int:
    """How many decisions one batch made (0: none, or not a batch)."""
    return ReviewEvent.objects.filter(batch=batch).count()
