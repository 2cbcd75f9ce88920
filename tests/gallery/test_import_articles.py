"""``manage.py import_articles``: create or update by slug, all or nothing."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from gallery.models import Article
from tests.conftest import database_url

pytestmark = pytest.mark.django_db

RECORDS = [
    {
        "slug": "nf4",
        "title": "FLUX in 4 bits",
        "summary": "It fits.",
        "content_type": "technical",
        "tone": "curious",
        "series": "local ai",
    },
    {
        "slug": "turbo",
        "title": "SDXL Turbo thumbnails",
        "summary": "Fast.",
        "content_type": "quick_tip",
        "tone": "brisk",
        "series": "",
    },
]


def write(tmp_path: Path, records: object) -> str:
    path = tmp_path / "articles.json"
    path.write_text(json.dumps(records))
    return str(path)


def test_import_creates_then_reports_updates_and_unchanged(tmp_path) -> None:
    out = io.StringIO()
    call_command("import_articles", write(tmp_path, RECORDS), stdout=out)
    assert "created nf4" in out.getvalue() and "2 created, 0 updated, 0 unchanged" in out.getvalue()
    assert Article.objects.get(slug="nf4").series == "local ai"

    changed = [{**RECORDS[0], "title": "FLUX.1 in 4 bits", "tone": "calm"}, RECORDS[1]]
    out = io.StringIO()
    call_command("import_articles", write(tmp_path, changed), stdout=out)
    assert "updated nf4: title, tone" in out.getvalue()
    assert "unchanged turbo" in out.getvalue()
    assert Article.objects.get(slug="nf4").title == "FLUX.1 in 4 bits"
    assert Article.objects.count() == 2


def test_a_bad_record_is_reported_by_index_and_field_and_nothing_is_written(tmp_path) -> None:
    bad = [RECORDS[0], {"slug": "x", "title": "", "content_type": "poem"}, {"slug": "nf4", "title": 5}]
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_articles", write(tmp_path, bad), stderr=err)
    report = err.getvalue()
    assert "record 1: title:" in report
    assert "record 1: content_type: Value 'poem' is not a valid choice." in report
    assert "record 2: title: must be a string" in report
    assert Article.objects.count() == 0


def test_duplicate_slugs_and_unknown_fields_are_refused(tmp_path) -> None:
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("import_articles", write(tmp_path, [RECORDS[0], {**RECORDS[0], "colour": "red"}]), stderr=err)
    assert "record 1: colour: unknown field" in err.getvalue()
    with pytest.raises(CommandError):
        call_command("import_articles", write(tmp_path, [RECORDS[0], RECORDS[0]]), stderr=err)
    assert "record 1: slug: duplicates record 0" in err.getvalue()
    assert Article.objects.count() == 0


def test_not_json_or_not_an_array_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(CommandError, match="is not valid JSON"):
        call_command("import_articles", str(path))
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("import_articles", write(tmp_path, {"slug": "a"}), stderr=err)
    assert "JSON array" in err.getvalue()
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_articles", str(tmp_path / "missing.json"))
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('[{"slug": "caf\xe9", "title": "Caf\xe9"}]'.encode("latin-1"))
    with pytest.raises(CommandError, match="is not UTF-8 text"):
        call_command("import_articles", str(latin1))
    assert Article.objects.count() == 0


def test_dash_reads_standard_input(transactional_db) -> None:
    root = Path(__file__).resolve().parent.parent.parent
    result = subprocess.run(
        [sys.executable, "manage.py", "import_articles", "-"],
        input=json.dumps(RECORDS),
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": database_url()},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "2 created" in result.stdout
    assert set(Article.objects.values_list("slug", flat=True)) == {"nf4", "turbo"}
