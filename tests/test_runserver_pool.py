"""``runserver`` (what ``make run`` serves the dashboard with) reuses its request threads: an idle
thread takes the next connection, keeping its database connection, instead of a new thread per
connection (docs/benchmarks.md, the dashboard section, for what a new thread costs a request)."""

from __future__ import annotations

import itertools
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import get_commands, load_command_class
from django.core.servers.basehttp import WSGIRequestHandler
from whitenoise.runserver_nostatic.management.commands.runserver import Command as NoStaticRunserver

from hoffdesk_images.management.commands.runserver import DaemonPool, PooledWSGIServer


def test_runserver_is_ours_and_still_leaves_static_files_to_whitenoise() -> None:
    assert get_commands()["runserver"] == "hoffdesk_images"
    command = load_command_class("hoffdesk_images", "runserver")
    assert isinstance(command, NoStaticRunserver)
    assert command.create_parser("manage.py", "runserver").get_default("use_static_handler") is False


def test_the_pool_reuses_an_idle_thread_and_adds_one_only_while_all_are_busy() -> None:
    pool = DaemonPool(most=2)
    seen: list[int] = []

    def note(done: threading.Event) -> None:
        seen.append(threading.get_ident())
        done.set()

    for _ in range(5):  # one after another: the same thread each time
        done = threading.Event()
        pool.submit(note, done)
        assert done.wait(5)
    assert len(set(seen)) == 1 and pool.threads == 1

    release = threading.Event()
    started = [threading.Event() for _ in range(3)]
    ran: list[int] = []

    def busy(i: int) -> None:
        started[i].set()
        release.wait(5)
        ran.append(i)

    for i in range(3):
        pool.submit(busy, i)
    assert started[0].wait(5) and started[1].wait(5)
    assert not started[2].wait(0.3)  # both threads are busy and the pool is at its most: it waits
    assert pool.threads == 2
    release.set()
    assert started[2].wait(5)
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("http-"))


@pytest.fixture
def server() -> Iterator[PooledWSGIServer]:
    # Which thread answered, by a thread-local number (a thread's ident can be reused by a
    # new thread once the old one has ended; this cannot).
    local, numbers = threading.local(), itertools.count()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if not hasattr(local, "number"):
            local.number = next(numbers)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(local.number).encode()]

    httpd = PooledWSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
    httpd.set_app(app)
    serving = threading.Thread(target=httpd.serve_forever, daemon=True)
    serving.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_connections_one_after_another_are_served_by_one_reused_thread(server: PooledWSGIServer) -> None:
    port = server.server_address[1]
    idents = set()
    for _ in range(8):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            idents.add(response.read())
    assert len(idents) == 1  # Django's own runserver: eight threads, eight database connections
