"""``manage.py create_api_token USERNAME``: a new bearer token, printed once as the last line."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from api.models import ApiToken
from gallery.access import can_act


class Command(BaseCommand):
    help = (
        "Make an API token for USERNAME (created in the editors group when missing) and print it as the "
        "last line. Only its hash is stored: copy it now."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What will use the token, shown in the admin.")

    def handle(self, *args: Any, username: str, name: str, **options: Any) -> None:
        username = username.strip()
        if not username:
            raise CommandError("Give a username.")
        with transaction.atomic():
            user, created = get_user_model().objects.get_or_create(username=username)
            if created:
                user.set_unusable_password()
                user.save(update_fields=["password"])
                user.groups.add(Group.objects.get_or_create(name="editors")[0])
                self.stdout.write(f"Created user {username} in the editors group (no password: API only).")
            _row, token = ApiToken.issue(user=user, name=name)
        if not can_act(user):
            self.stderr.write(
                f"Warning: {username} is in neither editors nor admins, so the API will answer 403 until they are."
            )
        self.stdout.write(f"Token for {username} (shown once; only its hash is stored):")
        self.stdout.write(token)
