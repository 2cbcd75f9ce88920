"""``manage.py export_published --git DIR``: the published renditions into a git repository (Git LFS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gallery.git_export import GitExportError, export_published


class Command(BaseCommand):
    help = (
        "Write every published article's renditions into a git repository (images in Git LFS), "
        "one commit per article changed; a second run with nothing new commits nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--git",
            metavar="DIR",
            required=True,
            help="the repository's folder (made and initialised when missing)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        repo = Path(options["git"]).expanduser()
        try:
            report = export_published(repo=repo)
        except GitExportError as exc:
            raise CommandError(str(exc)) from exc
        if not report.committed:
            self.stdout.write(f"{repo}: nothing changed ({len(report.unchanged)} published articles up to date).")
            return
        for subject in report.committed.values():
            self.stdout.write(f"committed: {subject}")
        self.stdout.write(
            self.style.SUCCESS(f"{repo}: {len(report.committed)} articles changed, {len(report.unchanged)} up to date.")
        )
