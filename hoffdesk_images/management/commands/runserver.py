"""``runserver`` as ``make run`` serves the dashboard: request threads are reused, not made per
connection.

Django's development server starts a new thread for every connection. On the owner's box that
is every page view, and a new thread costs a request more than its creation: Django keeps one
database connection per thread, so with a thread per request ``CONN_MAX_AGE`` never takes effect
(a new SQLite connection, its PRAGMAs and Django's per-thread database wrapper, ~4 ms a request),
and the new thread often lands on a vCPU whose caches are cold (~6 ms more on the 2-vCPU dev VM;
docs/benchmarks.md, the dashboard section). Here a pool of threads serves the connections
instead: an idle thread takes the next one, with its connection still open, and new threads are
made only while all are busy, up to ``HOFFDESK_HTTP_THREADS`` (default 256, so image API clients
waiting for their runs, which each hold a thread under WSGI, cannot starve the dashboard before
that many wait at once; ``uvicorn``, docs/deploy.md, holds no thread for them at all).

Everything else is the runserver below this one in ``INSTALLED_APPS`` (WhiteNoise's, which
leaves static files to WhiteNoise), options included; ``--nothreading`` still serves one
connection at a time.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.servers.basehttp import WSGIServer
from whitenoise.runserver_nostatic.management.commands.runserver import Command as NoStaticRunserver


class DaemonPool:
    """Reused daemon threads, made only while none is idle, at most ``most``. Daemon threads, like
    Django's own per-connection ones: stopping the server never waits for a request still
    running (an image API client waiting minutes for its run), which ``ThreadPoolExecutor``'s
    threads would make it do."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.work: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = queue.SimpleQueue()
        self.idle = threading.Semaphore(0)
        self.threads = 0
        self.lock = threading.Lock()

    def submit(self, function: Callable[..., None], *args: Any) -> None:
        self.work.put((function, args))
        if self.idle.acquire(blocking=False):
            return  # an idle thread takes it
        with self.lock:
            if self.threads < self.most:
                self.threads += 1
                threading.Thread(target=self._work, name=f"http-{self.threads}", daemon=True).start()

    def _work(self) -> None:
        while True:
            function, args = self.work.get()
            function(*args)  # never raises: PooledWSGIServer._serve handles every error
            self.idle.release()


class PooledWSGIServer(WSGIServer):
    """Django's ``WSGIServer`` handing each accepted connection to a pool of reused threads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool = DaemonPool(settings.HOFFDESK_HTTP_THREADS)

    def process_request(self, request: socket.socket, client_address: Any) -> None:  # type: ignore[override]
        self.pool.submit(self._serve, request, client_address)

    def _serve(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


class Command(NoStaticRunserver):
    def inner_run(self, *args: Any, **options: Any) -> None:
        if options.get("use_threading", True):
            # The pool is the threading: Django's own would wrap the server in ThreadingMixIn,
            # whose thread-per-connection ``process_request`` comes first.
            self.server_cls = PooledWSGIServer
            options["use_threading"] = False
        super().inner_run(*args, **options)
