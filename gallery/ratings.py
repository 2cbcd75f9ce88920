"""Star ratings, 0-5 (0: unrated), as photo culling tools keep them beside keep/reject.

A rating is not a review decision: it never changes the review state, so it may be given to a
pending, approved or rejected candidate alike. It is kept with the review events (action RATE,
the stars in ``rating``) so the history says who rated what and when.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from gallery.models import Article
from generation.models import Candidate, ReviewEvent

MAX_RATING = 5


def rating_from_text(value: str) -> int:
    """A form's ``rating`` value as 0-5, or a ValidationError naming the field."""
    text = value.strip()
    if not text.isdigit() or int(text) > MAX_RATING:
        raise ValidationError({"rating": f"rating must be a whole number from 0 to {MAX_RATING}, not {value!r}."})
    return int(text)


def candidate_rate(*, candidate: Candidate, rating: int, by: Any) -> ReviewEvent | None:
    """Set the candidate's rating and record it as an event, in one transaction.

    One conditional UPDATE (only when the rating differs), so a double key press or two editors
    giving the same stars write one event; None comes back when nothing changed."""
    if not 0 <= rating <= MAX_RATING:
        raise ValidationError({"rating": f"rating must be from 0 to {MAX_RATING}, not {rating}."})
    with transaction.atomic():
        changed = Candidate.objects.filter(pk=candidate.pk).exclude(rating=rating).update(rating=rating)
        candidate.refresh_from_db(fields=["rating", "review_status"])
        if not changed:
            return None
        event = ReviewEvent.objects.create(
            candidate=candidate,
            actor=by,
            action=ReviewEvent.Action.RATE,
            from_status=candidate.review_status,
            to_status=candidate.review_status,
            rating=rating,
        )
        Article.objects.filter(runs__candidates=candidate).update(updated_at=timezone.now())
    return event
