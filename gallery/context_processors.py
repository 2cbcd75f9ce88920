from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from gallery.access import can_act


def access(request: HttpRequest) -> dict[str, Any]:
    """``can_act`` in every template, evaluated only where a template asks (templates call it)."""
    return {"can_act": lambda: can_act(request.user)}
