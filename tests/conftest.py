"""Shared fixtures: a real qcluster worker process, articles, logged-in clients."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from gallery.models import Article
from generation.models import GenerationRun

# moto's standalone S3 server over real HTTP, behind a proxy that records what it receives.
pytest_plugins = ["tests.s3_fixtures", "tests.comfyui_server"]

ROOT = Path(__file__).resolve().parent.parent
# Fixed torch threads: byte-identical PNGs need the same thread count (docs/design.md).
TORCH_THREADS = "2"


def database_url() -> str:
    """A URL for the database this test runs on (the test database), for child processes."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def pg_ctl(action: str, *options: str) -> None:
    """``pg_ctl <action>`` on the PostgreSQL server scripts/test-postgres.sh started (its
    ``HOFFDESK_TEST_PG_*`` variables), waiting for it to finish; e.g. ``pg_ctl("stop", "-m", "fast")``."""
    as_user = (
        ["runuser", "-u", os.environ["HOFFDESK_TEST_PG_USER"], "--"] if os.environ.get("HOFFDESK_TEST_PG_USER") else []
    )
    data, log = os.environ["HOFFDESK_TEST_PG_DATA"], os.environ["HOFFDESK_TEST_PG_LOG"]
    if action == "start":  # a restart reuses the running server's options; a start needs them
        options = ("-o", os.environ["HOFFDESK_TEST_PG_OPTIONS"], *options)
    command = [*as_user, os.environ["HOFFDESK_TEST_PG_CTL"], "-D", data, "-l", log, *options, "-w", action]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


needs_pg_ctl = pytest.mark.skipif(
    "HOFFDESK_TEST_PG_OPTIONS" not in os.environ or connection.vendor != "postgresql",
    reason="stops or restarts the PostgreSQL server of scripts/test-postgres.sh (its HOFFDESK_TEST_PG_* variables)",
)


def worker_env(**overrides: str) -> dict[str, str]:
    """The environment of a worker process that shares this test's database and folders."""
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url(),
            "HOFFDESK_DATA_DIR": str(settings.DATA_DIR),
            "HOFFDESK_MODELS_DIR": str(settings.HOFFDESK_MODELS_DIR),
            "HOFFDESK_TORCH_THREADS": TORCH_THREADS,
            "HOFFDESK_HEARTBEAT_INTERVAL": "0.5",
            "HOFFDESK_PROGRESS_INTERVAL": "0.1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


class Worker:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    def kill_hard(self) -> None:
        """kill -9 of the whole cluster: the main process and its worker children."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_worker(transactional_db: None, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start real ``manage.py qcluster`` processes on the test database."""
    workers: list[Worker] = []

    def start(**env: str) -> Worker:
        log = tmp_path / f"qcluster-{len(workers)}.log"
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "qcluster"],
            cwd=ROOT,
            env=worker_env(**env),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = Worker(proc, log)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, worker: Worker | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    detail = f"\n--- worker log ---\n{worker.output()[-4000:]}" if worker else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{detail}")


def wait_finished(run: GenerationRun, timeout: float = 120, worker: Worker | None = None) -> GenerationRun:
    def finished() -> bool:
        run.refresh_from_db()
        return run.is_finished

    wait_for(finished, timeout, f"run {run.pk} to finish", worker)
    return run


@pytest.fixture
def article(db: None) -> Article:
    return Article.objects.create(
        slug="flux-on-a-3080",
        title="Running FLUX on a 3080 Ti",
        summary="Four-bit quantization makes a 12 B model fit in 12 GB.",
        content_type="technical",
        tone="curious",
    )


def make_user(username: str, *groups: str):  # type: ignore[no-untyped-def]
    """A user with password ``<username>-pass-123`` in the named groups (made by a migration)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user(username=username, password=f"{username}-pass-123")
    # get_or_create: a transactional test's flush removes the groups the data migration made.
    user.groups.set([Group.objects.get_or_create(name=name)[0] for name in groups])
    return user


@pytest.fixture
def editor(db):  # type: ignore[no-untyped-def]
    """A member of the ``editors`` group: may generate and review."""
    return make_user("editor", "editors")


@pytest.fixture
def onlooker(db):  # type: ignore[no-untyped-def]
    """Logged in but in no group: may look, not act."""
    return make_user("onlooker")


@pytest.fixture
def editor_client(client, editor):  # type: ignore[no-untyped-def]
    client.force_login(editor)
    return client


@pytest.fixture(autouse=True)
def empty_candidates_folder() -> None:
    """Run ids restart when a transactional test flushes the tables; start each test with no
    candidate files so a file count belongs to this test alone."""
    import shutil

    shutil.rmtree(settings.CANDIDATES_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):  # type: ignore[no-untyped-def]
    return {
        **browser_type_launch_args,
        "executable_path": "/usr/bin/chromium",
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


# The pixel width of the file an <img> actually loaded: with ``srcset`` w-descriptors the
# element's own naturalWidth is density-corrected to its slot, so it says nothing about the file.
LOADED_PIXEL_WIDTH_JS = """async img => {
    const probe = new Image();
    probe.src = img.currentSrc;
    await probe.decode();
    return [probe.naturalWidth, img.getBoundingClientRect().width, img.currentSrc];
}"""


# The rows the data migrations write (presets, the hero template, the editors/admins groups):
# a transactional test's flush deletes them, so a transactional test that needs them asks for
# them again. Re-running the migrations' own functions keeps one source of truth; each is
# idempotent (get_or_create, or an update of what is there).
DATA_MIGRATIONS = [
    ("generation.migrations.0002_default_presets", "add_defaults"),
    ("generation.migrations.0008_owner_presets", "add_owner_presets"),
    ("generation.migrations.0013_presets_end_at_hero_size", "turbo_presets_to_hero_size"),
    ("gallery.migrations.0003_editor_groups", "create_groups"),
]


@pytest.fixture
def migration_data(transactional_db: None) -> None:
    """The data migrations' rows, back after earlier transactional tests flushed them (use
    instead of ``serialized_rollback``, whose reload collides with the content types a flush's
    post_migrate made again)."""
    import importlib
    from types import SimpleNamespace

    from django.apps import apps

    schema_editor = SimpleNamespace(connection=connection)  # all the functions read of it
    for module, function in DATA_MIGRATIONS:
        getattr(importlib.import_module(module), function)(apps, schema_editor)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL pass (scripts/test-postgres.sh) is for what touches the database: a test
    that uses none (the engine on tiny models, the planner, the ComfyUI protocol) proved all it
    can on the SQLite pass, so it is skipped here instead of costing CI its time twice."""
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        return
    database_fixtures = {"db", "transactional_db", "live_server", "django_db_setup"}
    skip = pytest.mark.skip(reason="uses no database: proved on the SQLite pass")
    for item in items:
        if item.get_closest_marker("django_db") is None and not database_fixtures & set(
            getattr(item, "fixturenames", ())
        ):
            item.add_marker(skip)
