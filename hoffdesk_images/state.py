"""The one way our models change state: a conditional UPDATE that names the state it leaves.

Two workers claiming one run, or two editors deciding one candidate, both send the UPDATE; the
database lets exactly one of them match the row, and the other learns it lost (False).
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q


class ConditionalTransitions(models.Model):
    """Abstract base for models that own a state machine (no fields, no table)."""

    class Meta:
        abstract = True

    def _transition(self, allowed: Q, **changes: Any) -> bool:
        """One conditional UPDATE of this row, only while it matches ``allowed``; True when it won,
        and then the instance reflects the new row."""
        won = type(self)._default_manager.filter(allowed, pk=self.pk).update(**changes) == 1
        if won:
            self.refresh_from_db()
        return won
