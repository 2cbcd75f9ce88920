from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser

PASSWORD_FILE_NAME = "admin-password.txt"


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only, from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # The mode above applies only to a new file; an old one keeps its mode, so set it too.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            fd = -1
            handle.write(text)
    finally:
        if fd != -1:
            os.close(fd)


class Command(BaseCommand):
    help = (
        "First-run setup after migrate: create the admin account if there is no user yet "
        "(password from HOFFDESK_ADMIN_PASSWORD, or a generated one: printed once on a terminal, "
        f"otherwise written to DATA_DIR/{PASSWORD_FILE_NAME} with mode 0600)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default=os.environ.get("HOFFDESK_ADMIN_USER", "admin"))

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        if user_model.objects.exists():
            return
        username = options["username"]
        password = os.environ.get("HOFFDESK_ADMIN_PASSWORD") or ""
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        user = user_model.objects.create_superuser(username=username, email="", password=password)
        admins, _ = Group.objects.get_or_create(name="admins")
        user.groups.add(admins)
        if not generated:
            self.stdout.write(f"Created the admin account '{username}' (password from HOFFDESK_ADMIN_PASSWORD).")
        elif self.stdout.isatty():
            self.stdout.write(
                self.style.WARNING(
                    f"Created the admin account '{username}' with password: {password}\n"
                    "This is shown once. Change it in the admin, or set HOFFDESK_ADMIN_PASSWORD "
                    "before the first run."
                )
            )
        else:
            # Not a terminal (a log file, a pipe, a service journal): keep the password out of it.
            path = Path(settings.DATA_DIR) / PASSWORD_FILE_NAME
            write_private_file(path, password + "\n")
            self.stdout.write(
                self.style.WARNING(
                    f"Created the admin account '{username}'. Its password is in {path.resolve()} "
                    "(readable by this user only). Change it in the admin and delete that file."
                )
            )
