"""Review policies (issue 20): what a preset decides by itself when one of its runs succeeds.

- ``manual`` (the default): nothing; an editor approves and publishes.
- ``auto_approve``: the run's first candidate is approved by the policy.
- ``auto_publish``: approved likewise, and scheduled to be published after the preset's grace
  period (``Candidate.auto_publish_at``); the light cluster's minute job in ``gallery.policies``
  publishes it then, unless an editor stopped it, rejected it or undid it meanwhile (any decision
  clears the schedule: ``Candidate._review``).

Review events name the policy (``ReviewEvent.policy``) and no person as the actor, so the history
says who decided. Called inside the transaction that records the run's candidates, so a run never
shows succeeded with its policy not applied.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from generation.models import Candidate, GenerationRun, ReviewEvent, StylePreset

Policy = StylePreset.ReviewPolicy

APPROVED_BY_POLICY: dict[str, str] = {
    Policy.AUTO_APPROVE: "Approved by the preset's review policy (auto-approve).",
    Policy.AUTO_PUBLISH: "Approved by the preset's review policy (auto-publish after {grace} minutes).",
}


def run_apply_review_policy(run: GenerationRun) -> Candidate | None:
    """Apply ``run``'s preset policy to its new candidates; the candidate it approved, if any."""
    preset = run.preset
    if preset is None or preset.review_policy not in APPROVED_BY_POLICY:
        return None
    first = run.candidates.order_by("index").first()
    if first is None or not first.approve(None, expected=Candidate.Review.PENDING):
        return None
    policy = preset.review_policy
    ReviewEvent.objects.create(
        candidate=first,
        actor=None,
        policy=policy,
        action=ReviewEvent.Action.APPROVE,
        from_status=Candidate.Review.PENDING,
        to_status=Candidate.Review.APPROVED,
        reason=APPROVED_BY_POLICY[policy].format(grace=preset.review_grace_minutes),
    )
    if policy == Policy.AUTO_PUBLISH:
        first.auto_publish_at = timezone.now() + timedelta(minutes=preset.review_grace_minutes)
        Candidate.objects.filter(pk=first.pk).update(auto_publish_at=first.auto_publish_at)
    return first
