"""Worker liveness: a beat per worker process, and what /healthz and the dashboard read from it.

Each django-q2 worker process starts a daemon thread at ``post_spawn`` that upserts its row in
``WorkerHeartbeat`` every ``HOFFDESK_HEARTBEAT_INTERVAL`` seconds with the database's clock, so
an idle GPU worker is visible too (a run's own heartbeat exists only while it runs). A GPU
worker's beat also says which profiles it can run from its own models folder
(``generation.demo.worker_profiles``), so the web can tell before queueing what a run will use.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.db.models.functions import Now
from django.utils import timezone

from generation.demo import installed_upscalers, worker_profiles
from generation.models import WorkerHeartbeat, worker_identity

logger = logging.getLogger(__name__)

GPU_CLUSTER = str(settings.Q_CLUSTER["name"])
# The dashboard warns when no GPU worker has beaten for this long.
WORKER_SILENT_AFTER: timedelta = WorkerHeartbeat.SILENT_AFTER


# Seconds /healthz and the worker banner wait for the ComfyUI server.
COMFYUI_HEALTH_TIMEOUT = 3.0


def comfyui_health() -> dict[str, Any] | None:
    """Whether the ComfyUI server (``HOFFDESK_COMFYUI_URL``) answers and how long its queue is;
    None when none is configured. Never names the address or the token (/healthz is public)."""
    from generation.comfyui import ComfyUIClient, ComfyUIError

    client = ComfyUIClient.from_settings()
    if client is None:
        return None
    client.timeout = COMFYUI_HEALTH_TIMEOUT
    try:
        queue = client.queue()
        version = client.system_stats().get("system", {}).get("comfyui_version", "")
    except (ComfyUIError, OSError) as exc:
        return {"reachable": False, "error": str(exc), "queue_running": None, "queue_pending": None}
    return {
        "reachable": True,
        "version": version,
        "queue_running": len(queue.running),
        "queue_pending": len(queue.pending),
    }


def comfyui_banner() -> str:
    """One line for the worker's log at start: the ComfyUI server's state, or that none is set."""
    health = comfyui_health()
    if health is None:
        return "ComfyUI: not configured (HOFFDESK_COMFYUI_URL unset); ComfyUI presets are refused."
    if not health["reachable"]:
        return f"ComfyUI: NOT reachable ({health['error']}); ComfyUI runs will be queued again or fail."
    return (
        f"ComfyUI: reachable (version {health['version'] or 'unknown'}), "
        f"{health['queue_running']} running and {health['queue_pending']} waiting in its queue."
    )


def worker_beat(cluster: str) -> None:
    """Record that this worker process is alive, on the database's clock, and (a GPU worker)
    which profiles it can run now: weights fetched while it runs count from the next beat."""
    identity = worker_identity()
    values: dict[str, Any] = {"cluster": cluster, "seen_at": Now()}
    if cluster == GPU_CLUSTER:
        values["profiles"] = worker_profiles()
        values["upscalers"] = installed_upscalers()
    updated = WorkerHeartbeat.objects.filter(worker=identity).update(**values)
    if not updated:
        WorkerHeartbeat.objects.update_or_create(worker=identity, defaults=values)


class WorkerBeat(threading.Thread):
    """Beats until the process ends; a database error is logged and the next beat reconnects.

    ``chores`` run after each beat, each on its own: what the worker process must retry until the
    database answers (``tasks.runs_record_unrecorded_failures``)."""

    def __init__(self, cluster: str, chores: Sequence[Callable[[], object]] = ()) -> None:
        super().__init__(daemon=True, name="hoffdesk-worker-beat")
        self.cluster = cluster
        self.chores = tuple(chores)
        self.stopped = threading.Event()

    def run(self) -> None:
        if self.cluster == GPU_CLUSTER:  # the worker that claims ComfyUI runs says how the server is
            try:
                logger.info("%s", comfyui_banner())
            except Exception:
                logger.warning("asking the ComfyUI server for the worker banner failed", exc_info=True)
        while True:
            try:
                worker_beat(self.cluster)
            except Exception:
                logger.warning("worker heartbeat failed; trying again", exc_info=True)
                connection.close()
            for chore in self.chores:
                try:
                    chore()
                except Exception:
                    logger.warning(
                        "worker chore %s failed; trying again", getattr(chore, "__name__", chore), exc_info=True
                    )
                    connection.close()
            if self.stopped.wait(settings.HOFFDESK_HEARTBEAT_INTERVAL):
                break
        connection.close()


def newest_worker(cluster: str = GPU_CLUSTER) -> tuple[WorkerHeartbeat | None, float | None]:
    """The most recently seen worker of ``cluster`` and the seconds since (database clock)."""
    beat = WorkerHeartbeat.objects.filter(cluster=cluster).annotate(now=Now()).first()
    if beat is None:
        return None, None
    now: Any = getattr(beat, "now", None) or timezone.now()
    return beat, max(0.0, (now - beat.seen_at).total_seconds())


def gpu_workers(cluster: str = GPU_CLUSTER) -> list[dict[str, Any]]:
    """Each live worker of ``cluster``, newest first, with its age and what it can run (/healthz)."""
    listed = []
    for beat in WorkerHeartbeat.live(cluster).annotate(now=Now()):
        now: Any = getattr(beat, "now", None) or timezone.now()
        listed.append(
            {
                "worker": beat.worker,
                "last_seen": beat.seen_at.isoformat(),
                "age_seconds": round(max(0.0, (now - beat.seen_at).total_seconds()), 1),
                "profiles": beat.profiles,
                "upscalers": beat.upscalers,
            }
        )
    return listed


def gpu_worker_silent() -> bool:
    """True when no GPU worker has been seen for a minute (the dashboard's banner)."""
    _, age = newest_worker()
    return age is None or age > WORKER_SILENT_AFTER.total_seconds()


def queue_depth() -> dict[str, int]:
    """Tasks waiting in the ORM broker, by cluster (the queue's key is the cluster's name)."""
    from django_q.models import OrmQ

    depth = {GPU_CLUSTER: 0, **{name: 0 for name in settings.Q_CLUSTER.get("ALT_CLUSTERS", {})}}  # type: ignore[attr-defined]
    for key, count in OrmQ.objects.values_list("key").annotate(n=Count("id")).order_by():
        depth[key] = count
    return depth
