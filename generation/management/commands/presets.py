from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation.presets_io import PresetsInvalid, presets_export, presets_import


class Command(BaseCommand):
    help = (
        "Export the style presets as JSON (presets export [FILE]) or create and update them by slug "
        "from such a file (presets import FILE, '-' reads standard input). Import is all or nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["export", "import"])
        parser.add_argument("file", nargs="?", default="-", help="path, or - for standard output/input")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "export":
            text = json.dumps(presets_export(), indent=2, ensure_ascii=False) + "\n"
            if options["file"] == "-":
                self.stdout.write(text, ending="")
            else:
                with open(options["file"], "w", encoding="utf-8") as fh:
                    fh.write(text)
            return
        source = options["file"]
        try:
            text = sys.stdin.read() if source == "-" else open(source, encoding="utf-8").read()
            records = json.loads(text)
        except OSError as exc:
            raise CommandError(f"cannot read {source}: {exc.strerror}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError(f"{source} is not valid UTF-8 JSON: {exc}") from None
        try:
            report = presets_import(records=records)
        except PresetsInvalid as exc:
            for index, field, message in exc.problems:
                self.stderr.write(f"{'record ' + str(index) if index >= 0 else 'file'}: {field}: {message}")
            raise CommandError(f"{len(exc.problems)} problem(s); no preset was changed") from None
        self.stdout.write(self.style.SUCCESS(f"{len(report['created'])} created, {len(report['updated'])} updated"))
