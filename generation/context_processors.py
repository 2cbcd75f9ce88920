from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from generation.profiles import get_profile


def engine_notice(request: HttpRequest) -> dict[str, Any]:
    """Tells every page plainly when images come from a random-weight demo model, (one query,
    only when a page shows it) when no GPU worker has been seen for a minute, and (one query, the
    generate form) which models will run on a stand-in because no GPU worker has their weights."""
    from generation.demo import demo_notice_due, stand_in_notes
    from generation.health import gpu_worker_silent

    profile = get_profile(settings.HOFFDESK_DEFAULT_MODEL)
    return {
        "default_profile": profile,
        "demo_mode": lambda: demo_notice_due(profile),  # only when a page asks
        "gpu_worker_silent": gpu_worker_silent,
        "stand_in_notes": stand_in_notes,
    }
