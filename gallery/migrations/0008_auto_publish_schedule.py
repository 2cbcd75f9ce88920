"""The auto-publish job (issue 20, review policies): a django-q2 schedule run every minute by the
light cluster, like the sweep (generation 0006). ``gallery.policies.candidates_auto_publish_due``
publishes what an auto-publish preset approved once its grace period is over."""

from typing import Any

from django.db import migrations
from django.utils import timezone

SCHEDULE_NAME = "hoffdesk-auto-publish"


def create_schedule(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "gallery.policies.candidates_auto_publish_due",
            "schedule_type": "I",  # Schedule.MINUTES
            "minutes": 1,
            "repeats": -1,
            "cluster": "light",
            "next_run": timezone.now(),
        },
    )


def delete_schedule(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("gallery", "0007_publication_cdn_purge"),
        ("generation", "0017_candidate_auto_publish_note"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
