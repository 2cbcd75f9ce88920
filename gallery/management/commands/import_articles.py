from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gallery.services import ImportInvalid, articles_import


class Command(BaseCommand):
    help = (
        "Create or update articles by slug from a JSON array of objects with slug, title, summary, "
        "content_type, tone and series ('-' reads standard input). All or nothing: a bad record is "
        "reported by index and field and nothing of the file is written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path to a JSON file, or - for standard input")

    def handle(self, *args: Any, **options: Any) -> None:
        source = options["file"]
        try:
            text = sys.stdin.read() if source == "-" else open(source, encoding="utf-8").read()
        except OSError as exc:
            raise CommandError(f"cannot read {source}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise CommandError(f"{source} is not UTF-8 text (byte {exc.start}): save it as UTF-8 JSON") from None
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{source} is not valid JSON: {exc}") from None
        try:
            report = articles_import(records=records)
        except ImportInvalid as exc:
            for index, field, message in exc.problems:
                where = f"record {index}" if index >= 0 else "file"
                self.stderr.write(f"{where}: {field}: {message}")
            raise CommandError(f"{len(exc.problems)} problem(s); nothing was imported") from None
        for slug in report.created:
            self.stdout.write(f"created {slug}")
        for slug, fields in report.updated.items():
            self.stdout.write(f"updated {slug}: {', '.join(fields)}")
        for slug in report.unchanged:
            self.stdout.write(f"unchanged {slug}")
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(report.created)} created, {len(report.updated)} updated, {len(report.unchanged)} unchanged"
            )
        )
