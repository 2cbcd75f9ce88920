"""Worker liveness: a beat per worker process, and what /healthz and the dashboard read from it.

Each django-q2 worker process starts a daemon thread at ``post_spawn`` that upserts its row in
``WorkerHeartbeat`` every ``HOFFDESK_HEARTBEAT_INTERVAL`` seconds with the database's clock, so
an idle GPU worker is visible too (a run's own heartbeat exists only while it runs). A GPU
worker's beat also says which profiles it can run from its own models folder
(``generation.demo.worker_profiles``), so the web can tell before queueing what a run will use,
and which model it holds loaded or is loading now (``worker_models``, told by the engine's
pipeline cache), so the banner says "loading FLUX.1-dev (40 s)" rather than nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.db.models.functions import Now
from django.utils import timezone

from generation.demo import installed_upscalers, worker_profiles
from generation.models import WorkerHeartbeat, worker_identity
from generation.profiles import UnknownProfile, get_profile

if TYPE_CHECKING:
    from generation.profiles import ModelProfile

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


class WorkerModels:
    """The model this worker process holds loaded and the one it is loading, since when.

    The engine's ``PipelineCache`` tells it (``loading``/``loaded``: the loader's listener), each
    time written at once by a beat of its own, so the banner shows a load as it starts, not a
    heartbeat interval later; the WorkerBeat thread writes it on every beat after that.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.loaded_profile = ""
        self.loading_profile = ""
        self.loading_since: datetime | None = None

    def loading(self, profile: ModelProfile) -> None:
        with self._lock:
            self.loading_profile, self.loading_since = profile.name, timezone.now()
        self._beat_now()

    def loaded(self, profile: ModelProfile | None) -> None:
        with self._lock:
            self.loaded_profile = profile.name if profile is not None else ""
            self.loading_profile, self.loading_since = "", None
        self._beat_now()

    def fields(self) -> dict[str, Any]:
        with self._lock:
            return {
                "loaded_profile": self.loaded_profile,
                "loading_profile": self.loading_profile,
                "loading_since": self.loading_since,
            }

    def _beat_now(self) -> None:
        try:
            worker_beat(GPU_CLUSTER)
        except Exception:  # the WorkerBeat thread writes it on its next beat
            logger.warning("writing the worker's model state failed; the next beat writes it", exc_info=True)
            connection.close()


worker_models = WorkerModels()


def worker_beat(cluster: str) -> None:
    """Record that this worker process is alive, on the database's clock, and (a GPU worker)
    which profiles it can run now (weights fetched while it runs count from the next beat) and
    which model it has loaded or is loading."""
    identity = worker_identity()
    values: dict[str, Any] = {"cluster": cluster, "seen_at": Now()}
    if cluster == GPU_CLUSTER:
        values["profiles"] = worker_profiles()
        values["upscalers"] = installed_upscalers()
        values.update(worker_models.fields())
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
                "loaded_profile": beat.loaded_profile,
                "loading_profile": beat.loading_profile,
                "loading_seconds": _seconds_since(beat.loading_since, now) if beat.loading_profile else None,
            }
        )
    return listed


def _seconds_since(when: datetime | None, now: datetime) -> int | None:
    return None if when is None else max(0, round((now - when).total_seconds()))


def gpu_worker_banner() -> tuple[bool, str]:
    """The dashboard banner's two facts from the newest GPU worker's beat, in one query: whether
    none has been seen for a minute, and what it is loading now with the seconds so far
    ("FLUX.1-dev (4-bit nf4) (40 s)"; "" when it loads nothing)."""
    beat, age = newest_worker()
    if beat is None or age is None or age > WORKER_SILENT_AFTER.total_seconds():
        return True, ""
    if not beat.loading_profile:
        return False, ""
    try:
        label = get_profile(beat.loading_profile).label
    except UnknownProfile:
        label = beat.loading_profile
    seconds = round(max(0.0, (timezone.now() - beat.loading_since).total_seconds())) if beat.loading_since else None
    return False, f"{label} ({seconds} s)" if seconds is not None else label


def gpu_worker_loaded_profile() -> str | None:
    """The profile the newest live GPU worker holds loaded (None: none seen, or none loaded):
    what the queue's order (``GenerationRun.claim_order``) prefers next. One query."""
    beat = WorkerHeartbeat.live(GPU_CLUSTER).only("loaded_profile").first()
    return (beat.loaded_profile or None) if beat is not None else None


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
