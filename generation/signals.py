"""Worker start: the heartbeat thread, the model preload (GPU worker), recovery of runs that a dead
worker left ``running``; file cleanup on delete."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django_q.signals import post_spawn

from generation.models import Candidate

logger = logging.getLogger(__name__)


@receiver(post_spawn)
def recover_runs_on_worker_start(sender: Any, proc_name: str, **kwargs: Any) -> None:
    from django_q.conf import Conf

    from generation.health import GPU_CLUSTER, WorkerBeat
    from generation.preload import Preload
    from generation.recovery import runs_recover_orphaned
    from generation.tasks import runs_record_unrecorded_failures

    WorkerBeat(str(Conf.CLUSTER_NAME), chores=[runs_record_unrecorded_failures]).start()
    if str(Conf.CLUSTER_NAME) == GPU_CLUSTER and settings.HOFFDESK_PRELOAD:
        # Beside the beat, never in its way: the heartbeat says "loading" meanwhile.
        Preload().start()

    try:
        recovered = runs_recover_orphaned()
    except Exception:  # a broken recovery must not stop the worker from serving new runs
        logger.exception("crash recovery failed in %s", proc_name)
        return
    if recovered:
        logger.warning("%s recovered runs %s left by a dead worker", proc_name, recovered)


@receiver(post_delete, sender=Candidate)
def delete_candidate_file(sender: Any, instance: Candidate, **kwargs: Any) -> None:
    """A deleted candidate (or its run or article) takes its image file along, after commit,
    so a rolled-back delete never loses a file."""
    name = instance.image.name
    if name:
        storage = instance.image.storage
        transaction.on_commit(lambda: storage.delete(name))
