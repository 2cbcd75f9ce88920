"""Under the production server (uvicorn, hoffdesk_images/asgi.py), clients waiting on the image
APIs hold no thread and no database connection: many of them wait while the dashboard still
answers at once, and static files are still served (WhiteNoise inside Django).

Django's ASGI handler gives every request a thread context for its sync parts, so an idle thread
per request exists; what matters is that none of them runs (or sleeps in) the wait."""

from __future__ import annotations

import base64
import gc
import http.client
import json
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from django.db.backends.signals import connection_created
from django.test import Client

from api import a1111, openai_images
from api.compat import WAIT_POLL_SECONDS
from api.models import ApiToken
from gallery.models import Article
from generation.models import GenerationRun
from tests.conftest import make_user
from tests.s3_fixtures import free_port

WAITERS = 40  # more than the 2 x 16 threads the old gunicorn command had
WAIT = 10.0  # HOFFDESK_IMAGE_API_WAIT: no worker runs, so every waiter gets its 504 after this


def test_the_waiting_endpoints_are_coroutines() -> None:
    """Django runs a coroutine view on the event loop: no thread of its own while it waits."""
    import asyncio

    assert asyncio.iscoroutinefunction(a1111.txt2img)
    assert asyncio.iscoroutinefunction(openai_images.image_generations)


class Server:
    """uvicorn serving hoffdesk_images.asgi in a thread of this process, on the test database, so
    the test can look inside: which threads run our code, which database connections are open."""

    def __init__(self, port: int) -> None:
        import uvicorn
        from django.core.asgi import get_asgi_application

        # hoffdesk_images.asgi's application, made here: importing that module turns persistent
        # connections off for the rest of this test session (the fixture does it for this test).
        self.port = port
        self.server = uvicorn.Server(
            uvicorn.Config(get_asgi_application(), host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.opened: weakref.WeakSet[Any] = weakref.WeakSet()
        self.csrf_cookie = ""
        connection_created.connect(self._opened)

    def _opened(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        if threading.current_thread() is not threading.main_thread():  # not the test's own
            self.opened.add(connection)

    def open_connections(self) -> int:
        """Database connections the server's threads hold open now."""
        gc.collect()  # a finished request's thread is gone; its connection wrapper too
        return sum(1 for wrapper in list(self.opened) if wrapper.connection is not None)

    def threads_in(self, path: str) -> list[str]:
        """Names of the threads whose stack is in a function of ``path`` right now."""
        frames = sys._current_frames()
        return [
            thread.name
            for thread in threading.enumerate()
            if thread.ident in frames and any(path in f.filename for f in traceback.extract_stack(frames[thread.ident]))
        ]

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            payload = None if body is None else json.dumps(body)
            conn.request(method, path, payload, {"Content-Type": "application/json", **(headers or {})})
            response = conn.getresponse()
            for header, value in response.getheaders():
                if header.lower() == "set-cookie" and value.startswith("csrftoken="):
                    self.csrf_cookie = value.split(";", 1)[0].split("=", 1)[1]
            return response.status, response.read()
        finally:
            conn.close()


@pytest.fixture
def server(transactional_db: None, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    from django.db import connection

    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)  # as hoffdesk_images.asgi does
    settings.HOFFDESK_IMAGE_API_WAIT = WAIT
    settings.HOFFDESK_USER_QUEUE_LIMIT = WAITERS
    server = Server(free_port())
    server.thread.start()
    deadline = time.monotonic() + 30
    while not server.server.started:
        assert server.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield server
    server.server.should_exit = True
    server.thread.join(timeout=30)
    connection_created.disconnect(server._opened)


@pytest.mark.slow
def test_waiting_image_clients_hold_no_connection_and_the_dashboard_answers_at_once(server: Server) -> None:
    Article.objects.create(slug="a", title="An article", content_type="technical", tone="calm")
    _row, token = ApiToken.issue(user=make_user("pipeline", "editors"), name="load")
    editor = Client()
    editor.force_login(make_user("editor", "editors"))
    cookie = {"Cookie": f"sessionid={editor.cookies['sessionid'].value}"}
    basic = {"Authorization": "Basic " + base64.b64encode(f"webui:{token}".encode()).decode()}
    bearer = {"Authorization": f"Bearer {token}"}
    tiny = {"prompt": "a lighthouse", "steps": 2}
    answers: list[tuple[int, bytes]] = []

    def wait_for_images(n: int) -> None:
        if n % 2:
            answers.append(server.request("POST", "/v1/images/generations", {**tiny, "size": "64x64"}, bearer))
        else:
            answers.append(server.request("POST", "/sdapi/v1/txt2img", {**tiny, "width": 64, "height": 64}, basic))

    started = time.monotonic()
    clients = [threading.Thread(target=wait_for_images, args=(n,)) for n in range(WAITERS)]
    for client in clients:
        client.start()
    while GenerationRun.objects.count() < WAITERS:  # until every one of them is queued and waiting
        assert time.monotonic() - started < WAIT, "the waiters' runs were not all queued in time"
        time.sleep(0.1)
    queued = time.monotonic() - started
    time.sleep(WAIT_POLL_SECONDS * 2)  # the preludes' threads have let go
    connections_while_waiting = server.open_connections()
    threads_in_the_views = server.threads_in("/api/")
    page_seconds = []
    for _ in range(10):
        before = time.monotonic()
        status, page = server.request("GET", "/", headers=cookie)
        page_seconds.append(time.monotonic() - before)
        assert status == 200 and b"An article" in page
    for client in clients:
        client.join(timeout=60)
    elapsed = time.monotonic() - started

    # Starved, a page would wait for a waiter's WAIT seconds; 2 s leaves room for a busy CI box.
    assert max(page_seconds) < 2.0, (page_seconds, f"all queued after {queued:.1f} s")
    # No thread runs the image APIs' code while they wait (before: one per waiter, in time.sleep),
    # and the only connection open is the shared poller's (before: one per waiter).
    assert set(threads_in_the_views) <= {"image-api-wait_0"}, threads_in_the_views  # the shared poller, at most
    assert connections_while_waiting <= 1, connections_while_waiting
    assert sorted(status for status, _body in answers) == [504] * WAITERS, answers[:3]
    assert elapsed < WAIT + 10, elapsed  # they waited together, not one after another
    status, css = server.request("GET", "/static/css/hoffdesk.css")
    assert status == 200 and b"{" in css  # static files under ASGI, from WhiteNoise


def test_the_readme_and_the_deploy_guide_show_the_same_asgi_production_command() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    command = "uvicorn hoffdesk_images.asgi:application --host 127.0.0.1 --port 8000 --workers 2"
    readme, deploy = (root / "README.md").read_text(), (root / "docs" / "deploy.md").read_text()
    assert command in " ".join(readme.split())
    assert f"bin/{command}" in deploy  # the systemd unit's ExecStart
    for text in (readme, deploy, (root / "docs" / "integrations.md").read_text()):
        assert "gunicorn" not in text and "hoffdesk_images.wsgi" not in text


def test_the_asgi_entry_point_keeps_no_persistent_connections(tmp_path: Any) -> None:
    """Each request's sync code runs on a new thread under ASGI: a kept connection would leak."""
    import subprocess

    code = "import hoffdesk_images.asgi; from django.conf import settings; print(settings.DATABASES['default'])"
    env = {"HOFFDESK_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "'CONN_MAX_AGE': 0," in out.stdout, out.stdout


@pytest.mark.slow
def test_login_throttling_still_answers_429_under_asgi(server: Server) -> None:
    """django-axes' middleware takes its async path under ASGI: the lockout must still show."""
    import re
    from urllib.parse import urlencode

    make_user("editor")
    status, page = server.request("GET", "/login/")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert status == 200 and token is not None
    answers = []
    for password in ["wrong"] * 5 + ["editor-pass-123"]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        form = urlencode({"username": "editor", "password": password, "csrfmiddlewaretoken": token[1].decode()})
        # Django's CSRF check wants the same secret in the cookie; the form token is masked with it.
        cookie = f"csrftoken={server.csrf_cookie}"
        conn.request("POST", "/login/", form, {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
        response = conn.getresponse()
        answers.append((response.status, response.read()))
        conn.close()
    assert [status for status, _ in answers] == [200, 200, 200, 200, 429, 429], answers[-1]
    assert b"Too many failed login attempts" in answers[-1][1]
