"""The publishing half of the review policies (``generation.policies`` approves): the minute job
that publishes what an auto-publish preset approved once its grace period is over, and Stop.

The job runs on the light cluster every minute (a django-q2 schedule, gallery migration 0008). It
takes each due candidate with one conditional UPDATE that clears its ``auto_publish_at`` (so two
schedulers, or a job that overlaps the next, publish it once), then asks for the publication like
an editor would: the same checks (approved, hero size, one live publication per article), with the
alt text suggestion (the editor can change it later, or unpublish). A refusal is recorded on the
candidate (``auto_publish_note``, shown on the article page) and logged; the candidate stays
approved, for an editor to publish by hand.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from gallery.publishing import PublishConflict, alt_text_suggestion, publication_request
from generation.models import Candidate

logger = logging.getLogger(__name__)

CENTRE = (0.5, 0.5)


def candidates_auto_publish_due(now: datetime | None = None) -> list[int]:
    """Publish every candidate whose auto-publish time has come; their ids, in the order done."""
    now = now or timezone.now()
    done: list[int] = []
    due = Candidate.objects.filter(
        auto_publish_at__lte=now, review_status=Candidate.Review.APPROVED, run__article__isnull=False
    ).order_by("auto_publish_at", "pk")
    for candidate in due.select_related("run__article"):
        taken = Candidate.objects.filter(pk=candidate.pk, auto_publish_at=candidate.auto_publish_at).update(
            auto_publish_at=None
        )
        if not taken:
            continue  # stopped, decided or taken by another scheduler meanwhile
        try:
            publication_request(candidate=candidate, by=None, alt_text=alt_text_suggestion(candidate), focal=CENTRE)
        except (ValidationError, PublishConflict) as exc:
            note = f"Auto-publish did not happen: {_message(exc)}"
            Candidate.objects.filter(pk=candidate.pk).update(auto_publish_note=note[:2000])
            logger.warning("auto-publish of candidate %s refused: %s", candidate.pk, note)
            continue
        done.append(candidate.pk)
    return done


def candidate_stop_auto_publish(*, candidate: Candidate, by: Any) -> bool:
    """An editor's veto: the scheduled publish does not happen; the candidate stays approved.
    False when nothing was scheduled any more (published already, or stopped by someone else)."""
    stopped = Candidate.objects.filter(pk=candidate.pk, auto_publish_at__isnull=False).update(auto_publish_at=None)
    if stopped:
        logger.info("auto-publish of candidate %s stopped by %s", candidate.pk, by)
    return bool(stopped)


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and hasattr(exc, "message_dict"):
        return " ".join(" ".join(messages) for messages in exc.message_dict.values())
    return str(exc)
