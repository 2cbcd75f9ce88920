"""Who may see and who may act.

Every URL needs a login. Pages send an anonymous visitor to the login page; fragments (htmx
swaps) and files answer 401, since a redirect would swap a login form into a card or an image.
Acting (generate, review, regenerate) needs the ``editors`` or ``admins`` group (a superuser
always may); anyone else logged in can look and gets a friendly 403 when they try.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase

ACTING_GROUPS = ("editors", "admins")

View = Callable[..., HttpResponseBase]


def can_act(user: Any) -> bool:
    """True for superusers and members of ``editors`` or ``admins`` (one query, then cached)."""
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser:
        return True
    cached = getattr(user, "_hoffdesk_can_act", None)
    if cached is None:
        cached = user.groups.filter(name__in=ACTING_GROUPS).exists()
        user._hoffdesk_can_act = cached
    return bool(cached)


def login_required_401(view: View) -> View:
    """For fragments and files: 401 instead of a redirect when nobody is logged in."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return HttpResponse("Log in to see this.", status=401, content_type="text/plain")
        return view(request, *args, **kwargs)

    return wrapped


def editor_required(view: View) -> View:
    """Login (redirect when anonymous), then the editors or admins group (403 otherwise)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not can_act(request.user):
            raise PermissionDenied("Your account can look but not act: ask an admin to add you to editors.")
        return view(request, *args, **kwargs)

    return login_required(wrapped)
