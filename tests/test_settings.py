"""Settings come from HOFFDESK_ variables; a bad value names its variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HOFFDESK_") and k != "DATABASE_URL"}
    full.update({"HOFFDESK_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "hoffdesk_images.settings", **env})
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DEBUG, s.ALLOWED_HOSTS, s.DATABASES['default']['ENGINE'], s.HOFFDESK_DEFAULT_MODEL, "
        "s.HOFFDESK_MODELS_DIR, s.DATABASES['default'].get('OPTIONS', {}).get('transaction_mode'))"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full, capture_output=True, text=True, timeout=60)


def test_defaults_just_work_with_sqlite_in_the_data_folder(tmp_path) -> None:
    result = load_settings(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "False",
        "['127.0.0.1',",
        "'localhost']",
        "django.db.backends.sqlite3",
        "tiny-sd",
        str(tmp_path / "models"),
        "IMMEDIATE",
    ]
    assert (tmp_path / "secret_key").exists()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"HOFFDESK_DEBUG": "maybe"}, "HOFFDESK_DEBUG"),
        ({"HOFFDESK_DEFAULT_MODEL": "dall-e-3"}, "HOFFDESK_DEFAULT_MODEL"),
        ({"HOFFDESK_RUN_MAX_ATTEMPTS": "0"}, "HOFFDESK_RUN_MAX_ATTEMPTS"),
        ({"HOFFDESK_TASK_TIMEOUT": "soon"}, "HOFFDESK_TASK_TIMEOUT"),
        ({"HOFFDESK_QUEUE_POLL": "fast"}, "HOFFDESK_QUEUE_POLL"),
        ({"HOFFDESK_SECRET_KEY_FILE": "/nonexistent/key"}, "HOFFDESK_SECRET_KEY_FILE"),
    ],
)
def test_a_bad_value_names_its_variable(tmp_path, env, named) -> None:
    result = load_settings(tmp_path, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and named in result.stderr


def test_secret_key_from_a_file_and_postgres_from_database_url(tmp_path) -> None:
    key = tmp_path / "key.txt"
    key.write_text("from-a-file\n")
    result = load_settings(
        tmp_path,
        HOFFDESK_SECRET_KEY_FILE=str(key),
        DATABASE_URL="postgres://u:p@db.example:5432/hoffdesk",
        HOFFDESK_DEBUG="yes",
        HOFFDESK_ALLOWED_HOSTS="localhost, 127.0.0.1",  # debug is refused on any other address
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.split()
    assert out[:4] == ["True", "['localhost',", "'127.0.0.1']", "django.db.backends.postgresql"]
    assert not (tmp_path / "secret_key").exists()


def test_django_q2_logs_through_our_logging_settings() -> None:
    """django-q2 logs as "django-q"; a LOGGING entry under another name (the package's,
    "django_q") leaves its logger to django-q2's own INFO handler, which logs every task."""
    import logging

    from django.conf import settings
    from django_q.conf import logger as q_logger

    logging_config: dict[str, Any] = settings.LOGGING
    assert q_logger.name in logging_config["loggers"]
    assert q_logger.level == logging.WARNING and not q_logger.propagate
    formats = {handler.formatter._fmt for handler in q_logger.handlers if handler.formatter}
    assert logging_config["formatters"]["plain"]["format"] in formats  # (pytest may add its own)
