from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from generation.profiles import get_profile


def engine_notice(request: HttpRequest) -> dict[str, Any]:
    """Tells every page plainly when images come from a random-weight demo model."""
    profile = get_profile(settings.HOFFDESK_DEFAULT_MODEL)
    return {"default_profile": profile, "demo_mode": profile.tiny}
