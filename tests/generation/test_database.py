"""The suite runs twice (SQLite, then PostgreSQL via DATABASE_URL); this keeps the second run honest."""

from __future__ import annotations

import os

import pytest
from django.db import connection


@pytest.mark.django_db
def test_tests_run_on_the_database_that_database_url_names() -> None:
    url = os.environ.get("DATABASE_URL", "")
    expected = "postgresql" if url.startswith(("postgres://", "postgresql://")) else "sqlite"
    assert connection.vendor == expected
    if expected == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "wal"
