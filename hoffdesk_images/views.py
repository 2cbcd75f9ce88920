"""Operator endpoints that are not part of the editorial dashboard."""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """No login and no secrets: is the database there, when was a GPU worker last seen, what each
    live GPU worker can run (profile asked for -> profile that runs: itself, or its tiny
    stand-in), how deep is each queue, whether the ComfyUI server answers. 503 when the database cannot be reached."""
    from generation.health import GPU_CLUSTER, comfyui_health, gpu_workers, newest_worker, queue_depth

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        beat, age = newest_worker()
        workers = gpu_workers()
        depth = queue_depth()
    except DatabaseError as exc:
        body = {"status": "error", "database": "unreachable", "error": type(exc).__name__}
        return JsonResponse(body, status=503)
    return JsonResponse(
        {
            "status": "ok",
            "database": "ok",
            "gpu_worker": {
                "cluster": GPU_CLUSTER,
                "last_seen": beat.seen_at.isoformat() if beat else None,
                "age_seconds": round(age, 1) if age is not None else None,
            },
            "gpu_workers": workers,
            "queue_depth": depth,
            # None without HOFFDESK_COMFYUI_URL; else reachable, version and its queue's length.
            "comfyui": comfyui_health(),
        }
    )
