from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "First-run setup after migrate: create the admin account if there is no user yet "
        "(password from HOFFDESK_ADMIN_PASSWORD, or a generated one printed once)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default=os.environ.get("HOFFDESK_ADMIN_USER", "admin"))

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        if user_model.objects.exists():
            return
        password = os.environ.get("HOFFDESK_ADMIN_PASSWORD") or ""
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username=options["username"], email="", password=password)
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"Created the admin account '{options['username']}' with password: {password}\n"
                    "This is shown once. Change it in the admin, or set HOFFDESK_ADMIN_PASSWORD "
                    "before the first run."
                )
            )
        else:
            self.stdout.write(
                f"Created the admin account '{options['username']}' (password from HOFFDESK_ADMIN_PASSWORD)."
            )
