"""/healthz for the operator and the dashboard's "no GPU worker" banner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from generation.models import WorkerHeartbeat
from generation.services import run_submit
from tests.conftest import ROOT, wait_for
from tests.test_readme_run_command import free_port

pytestmark = pytest.mark.django_db


def test_healthz_needs_no_login_and_reports_database_worker_and_queues(
    client, article, django_capture_on_commit_callbacks
) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["gpu_worker"] == {"cluster": "hoffdesk", "last_seen": None, "age_seconds": None}
    assert body["queue_depth"] == {"hoffdesk": 0, "light": 0}

    with django_capture_on_commit_callbacks(execute=True):
        run_submit(article=article, model="tiny-sd", seed=1, count=1)
    WorkerHeartbeat.objects.create(worker="gpu-box:42", cluster="hoffdesk", seen_at=timezone.now())
    body = client.get("/healthz").json()
    assert body["queue_depth"]["hoffdesk"] == 1
    assert body["gpu_worker"]["last_seen"] is not None and body["gpu_worker"]["age_seconds"] < 5
    assert "secret" not in json.dumps(body).lower() and "password" not in json.dumps(body).lower()


def test_the_dashboard_warns_when_no_gpu_worker_was_seen_for_a_minute(editor_client) -> None:
    assert b'data-testid="no-worker"' in editor_client.get("/").content
    WorkerHeartbeat.objects.create(worker="gpu-box:1", cluster="hoffdesk", seen_at=timezone.now())
    assert b'data-testid="no-worker"' not in editor_client.get("/").content
    WorkerHeartbeat.objects.update(seen_at=timezone.now() - timedelta(seconds=90))
    assert b'data-testid="no-worker"' in editor_client.get("/").content
    # A light worker alone does not count: it cannot make images.
    WorkerHeartbeat.objects.create(worker="web-box:2", cluster="light", seen_at=timezone.now())
    assert b'data-testid="no-worker"' in editor_client.get("/").content


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_idle_worker_keeps_beating_and_healthz_sees_it(start_worker, client) -> None:
    worker = start_worker(HOFFDESK_HEARTBEAT_INTERVAL="0.5")

    def seen() -> bool:
        return client.get("/healthz").json()["gpu_worker"]["age_seconds"] is not None

    wait_for(seen, 60, "the worker's first beat", worker)
    first = WorkerHeartbeat.objects.get(cluster="hoffdesk").seen_at
    time.sleep(1.5)
    assert WorkerHeartbeat.objects.get(cluster="hoffdesk").seen_at > first  # idle, still beating
    assert client.get("/healthz").json()["gpu_worker"]["age_seconds"] < 5


def serve_wsgi(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """The app behind a real WSGI server (wsgiref) in a child process, and its port.
    (runserver itself refuses to start without a database.)"""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from wsgiref.simple_server import make_server; from hoffdesk_images.wsgi import application; "
            f"make_server('127.0.0.1', {port}, application).serve_forever()",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, port


def get_healthz(port: int, timeout: float = 30) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of /healthz, waiting up to ``timeout`` seconds for the server to listen."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except (ConnectionError, urllib.error.URLError):
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.3)


UNREACHABLE = {"status": "error", "database": "unreachable", "error": "OperationalError"}


@pytest.mark.slow
def test_healthz_answers_503_when_the_database_cannot_be_reached(tmp_path) -> None:
    """A real WSGI server whose database file cannot be opened (its folder does not exist)."""
    env = {
        **os.environ,
        "HOFFDESK_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite:///{tmp_path}/missing-folder/db.sqlite3",
        "HOFFDESK_SECRET_KEY": "x" * 50,
    }
    proc, port = serve_wsgi(env)
    try:
        assert get_healthz(port) == (503, UNREACHABLE)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
