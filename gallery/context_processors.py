from __future__ import annotations

from functools import cache
from typing import Any

from django.http import HttpRequest

from gallery.access import can_act


def access(request: HttpRequest) -> dict[str, Any]:
    """``can_act`` in every template, evaluated only where a template asks (templates call it),
    and once per request (the article page asks ~70 times)."""
    return {"can_act": cache(lambda: can_act(request.user))}
