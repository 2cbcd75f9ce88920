"""What the AUTOMATIC1111 and OpenAI image APIs share: the token (Basic or Bearer), the JSON body,
waiting for a run, and the candidates' PNG bytes.

These APIs answer the way their clients expect, so they are plain Django views rather than
django-ninja operations (whose errors have our own shape). A request queues a normal run through
``generation.services.run_submit`` and then only polls the database: the run is on the queue on
its own, so a client that hangs up leaves it to finish and land in the Inbox. The waiting views
are coroutines: under ASGI (hoffdesk_images/asgi.py) a wait holds no thread (``RunWatcher``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import wraps
from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.db import close_old_connections, connection, connections
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from api.auth import BearerToken
from api.errors import ApiError
from api.models import ApiToken
from generation.models import Candidate, GenerationRun

# Seconds between two looks at a waited-for run: short next to a generation, cheap for SQLite.
WAIT_POLL_SECONDS = 0.25


class TokenRefused(Exception):
    """No usable token: ``status`` 401 (missing, unknown, revoked) or 403 (may not act)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def token_from_header(request: HttpRequest, *, basic: bool) -> ApiToken:
    """The API token in ``Authorization``: ``Bearer TOKEN``, or with ``basic`` also HTTP Basic whose
    password is the token (``anything:TOKEN``, what AUTOMATIC1111 clients send)."""
    header = request.headers.get("Authorization", "").strip()
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if not header:
        how = "HTTP Basic with the API token as password, or `Bearer TOKEN`" if basic else "`Bearer TOKEN`"
        raise TokenRefused(401, f"Authorization: send {how} (make one with `manage.py create_api_token USERNAME`).")
    credentials: dict[str, str] | None = None
    if scheme.lower() == "basic" and basic:
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise TokenRefused(401, "Authorization: the Basic credentials are not base64 of user:password.") from None
        value = password or user
        credentials = {"username": user}
        if AxesProxyHandler.is_locked(request, credentials):
            raise TokenRefused(429, f"Authorization: {settings.AXES_COOLOFF_MESSAGE}")
    elif scheme.lower() != "bearer" or not value:
        raise TokenRefused(401, "Authorization: the header must read `Bearer TOKEN`.")
    try:
        token: ApiToken = BearerToken().authenticate(request, value)
    except ApiError as exc:
        if credentials is not None and exc.status == 401:
            basic_failed(request, credentials)
        raise TokenRefused(exc.status, exc.detail) from None
    return token


def basic_failed(request: HttpRequest, credentials: dict[str, str]) -> None:
    """Count a refused HTTP Basic password like a failed login (django-axes, the same limits: the
    Basic user name with the address, and the address alone); the failure that reaches a limit is
    already a 429, in our JSON rather than axes' page."""
    user_login_failed.send(sender=__name__, credentials=credentials, request=request)
    if getattr(request, "axes_locked_out", False):
        request.axes_locked_out = False  # type: ignore[attr-defined]  # answered here, not by AxesMiddleware
        raise TokenRefused(429, f"Authorization: {settings.AXES_COOLOFF_MESSAGE}")


def json_body(request: HttpRequest) -> dict[str, Any] | None:
    """The request body as a JSON object; None when it is not one."""
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def is_whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def wait_seconds() -> float:
    return float(settings.HOFFDESK_IMAGE_API_WAIT)


class RunWatcher:
    """Every image-API request waiting on one event loop waits here, on a future: one poller asks
    the database, once a tick, which of all the waited-for runs have finished, on one thread with
    one connection. A waiting request holds no busy thread and no database connection of its own
    (under WSGI each held a thread, and its connection, for up to HOFFDESK_IMAGE_API_WAIT)."""

    def __init__(self) -> None:
        self.waiting: dict[int, set[asyncio.Future[None]]] = {}
        self.poller: asyncio.Task[None] | None = None

    async def wait(self, run_id: int, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        self.waiting.setdefault(run_id, set()).add(finished)
        if self.poller is None or self.poller.done():
            self.poller = loop.create_task(self._poll())
        try:
            await asyncio.wait_for(finished, timeout)
        except TimeoutError:
            return False
        finally:
            futures = self.waiting.get(run_id, set())
            futures.discard(finished)
            if not futures:
                self.waiting.pop(run_id, None)
        return True

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.waiting:
                try:
                    done = await loop.run_in_executor(WAIT_THREAD, _finished_among, list(self.waiting))
                except Exception as exc:  # the database is away: every waiter answers its 500
                    for futures in self.waiting.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    self.waiting.clear()
                    raise
                for run_id in done:
                    for future in self.waiting.pop(run_id, set()):
                        if not future.done():
                            future.set_result(None)
                await asyncio.sleep(WAIT_POLL_SECONDS)
        finally:
            # Nobody waits: no connection is kept (a test database could not be dropped).
            await loop.run_in_executor(WAIT_THREAD, connections.close_all)


# The one thread the pollers' queries run on (one database connection while anyone waits).
WAIT_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-api-wait")
_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RunWatcher] = weakref.WeakKeyDictionary()


def _finished_among(run_ids: list[int]) -> list[int]:
    close_old_connections()  # a broken or too old connection is replaced, as a request would
    finished = GenerationRun.objects.filter(pk__in=run_ids, status__in=GenerationRun.FINISHED)
    return list(finished.values_list("pk", flat=True))


async def run_wait(run_id: int, timeout: float) -> bool:
    """Wait until the run has finished (True) or ``timeout`` seconds have passed (False), holding
    no thread meanwhile. Nothing here drives the run: if the client goes away, the worker finishes
    it all the same."""
    loop = asyncio.get_running_loop()
    watcher = _watchers.get(loop)
    if watcher is None:
        watcher = _watchers[loop] = RunWatcher()
    return await watcher.wait(run_id, timeout)


def release_connection() -> None:
    """Close this thread's database connection before a long wait (outside a transaction only:
    a test's own transaction stays), so a waiting request keeps no connection open."""
    if not connection.in_atomic_block:
        connection.close()


def candidate_png(candidate: Candidate) -> bytes:
    with candidate.image.open("rb") as fh:
        data: bytes = fh.read()
    return data


def run_pngs(run: GenerationRun) -> list[tuple[Candidate, bytes]]:
    """Each candidate of the run with its PNG, in order."""
    return [(c, candidate_png(c)) for c in run.candidates.order_by("index")]


def allow_methods(
    *methods: str, refuse: Callable[[HttpRequest, list[str]], HttpResponse]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """CSRF-exempt (token auth, no cookies) and only ``methods``; any other is ``refuse``-d. A
    coroutine view stays a coroutine view (Django then runs it without a thread)."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        if asyncio.iscoroutinefunction(view):

            @csrf_exempt
            @wraps(view)
            async def awrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
                if request.method not in methods:
                    return refuse(request, list(methods))
                response: HttpResponseBase = await view(request, *args, **kwargs)
                return response

            return awrapped

        @csrf_exempt
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                return refuse(request, list(methods))
            response: HttpResponseBase = view(request, *args, **kwargs)
            return response

        return wrapped

    return decorate
