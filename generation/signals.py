"""Worker start: recover runs that a dead worker left ``running``."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver
from django_q.signals import post_spawn

logger = logging.getLogger(__name__)


@receiver(post_spawn)
def recover_runs_on_worker_start(sender: Any, proc_name: str, **kwargs: Any) -> None:
    from generation.services import runs_recover_orphaned

    try:
        recovered = runs_recover_orphaned()
    except Exception:  # a broken recovery must not stop the worker from serving new runs
        logger.exception("crash recovery failed in %s", proc_name)
        return
    if recovered:
        logger.warning("%s recovered runs %s left by a dead worker", proc_name, recovered)
