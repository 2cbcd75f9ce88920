from __future__ import annotations

import functools
import threading
import time
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from generation.profiles import get_profile

# How long one look at the ComfyUI server stands for every page view: a page must not wait on the
# network each time, and a server that went away shows up within half a minute.
COMFYUI_HEALTH_CACHE_SECONDS = 30.0
_comfyui_checks: dict[str, tuple[float, bool]] = {}  # url -> (when checked, whether it answered)
_comfyui_lock = threading.Lock()


def forget_comfyui_health() -> None:
    """Drop the cached answers (the next page view asks the server again)."""
    with _comfyui_lock:
        _comfyui_checks.clear()


def comfyui_down() -> bool:
    """Whether HOFFDESK_COMFYUI_URL is set but the server did not answer when last asked (at most
    COMFYUI_HEALTH_CACHE_SECONDS ago, per process). No server configured: False, and no request."""
    from generation.health import comfyui_health

    url = settings.HOFFDESK_COMFYUI_URL
    if not url:
        return False
    now = time.monotonic()
    with _comfyui_lock:
        cached = _comfyui_checks.get(url)
    if cached is not None and now - cached[0] < COMFYUI_HEALTH_CACHE_SECONDS:
        return not cached[1]
    health = comfyui_health()
    reachable = health is None or bool(health["reachable"])
    with _comfyui_lock:
        _comfyui_checks[url] = (now, reachable)
    return not reachable


def engine_notice(request: HttpRequest) -> dict[str, Any]:
    """Tells every page plainly when images come from a random-weight demo model, (one query,
    only when a page shows it) when no GPU worker has been seen for a minute, (one request at most
    every 30 s) when the configured ComfyUI server does not answer, and (one query, the generate
    form) which models will run on a stand-in because no GPU worker has their weights."""
    from generation.demo import demo_notice_due, stand_in_notes
    from generation.health import gpu_worker_banner

    profile = get_profile(settings.HOFFDESK_DEFAULT_MODEL)
    banner = functools.cache(gpu_worker_banner)
    return {
        "default_profile": profile,
        "demo_mode": lambda: demo_notice_due(profile),  # only when a page asks
        # One query for both banner lines, only when a page shows them.
        "gpu_worker_silent": lambda: banner()[0],
        "gpu_worker_loading": lambda: banner()[1],  # "FLUX.1-dev (4-bit nf4) (40 s)" while it loads
        "comfyui_down": comfyui_down,
        "stand_in_notes": stand_in_notes,
    }
