"""No wait for the first load (issue 18, item 4): the GPU worker loads a model when it starts.

A real model takes tens of seconds to load; without this the editor's first click of the day paid
for it. At ``post_spawn`` (``generation.signals``) a GPU worker process starts ``Preload``, a
thread of its own, so the WorkerBeat thread keeps beating meanwhile and the heartbeat says
"loading" (``generation.health.worker_models``) and then which model is loaded. A task that
arrives during the load waits for it at the pipeline cache's lock and never loads a second copy.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from generation.demo import WeightsMissing, worker_engine_profile
from generation.models import GenerationRun
from generation.profiles import ModelProfile, UnknownProfile, get_profile

logger = logging.getLogger(__name__)

# "The most used of the last day": runs queued within this window count.
USAGE_WINDOW = timedelta(days=1)


def preload_profile() -> ModelProfile | None:
    """The profile to load at start, as this worker runs it (its stand-in in demo mode): the one
    asked for most in the last day, else ``HOFFDESK_DEFAULT_MODEL``. None when this worker cannot
    run it (no weights), or it is a real model and there is no CUDA (it would refuse it anyway)."""
    recent = (
        GenerationRun.objects.filter(queued_at__gte=timezone.now() - USAGE_WINDOW, comfy_workflow__isnull=True)
        .values("model_profile")
        .annotate(runs=Count("id"))
        .order_by("-runs", "model_profile")
        .first()
    )
    name = recent["model_profile"] if recent else settings.HOFFDESK_DEFAULT_MODEL
    try:
        profile = get_profile(worker_engine_profile(get_profile(name)))
    except (UnknownProfile, WeightsMissing) as exc:
        logger.info("no model preloaded: %s", exc)
        return None
    if profile.is_real:
        import torch

        if not torch.cuda.is_available():
            logger.info("no model preloaded: %s needs CUDA, which this worker has not", profile.name)
            return None
    return profile


class Preload(threading.Thread):
    """Loads ``preload_profile`` into this process's engine cache; a failure is logged only (the
    first run then loads it, and fails with the reason if it must)."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="hoffdesk-preload")

    def run(self) -> None:
        from generation.tasks import engine_cache

        try:
            profile = preload_profile()
            if profile is None:
                return
            started = time.perf_counter()
            engine_cache().get(profile)
            logger.info("preloaded %s in %.1f s", profile.name, time.perf_counter() - started)
        except Exception:
            logger.exception("preloading the default model failed; the first run loads it")
        finally:
            connection.close()
