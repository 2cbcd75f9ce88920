"""The periodic sweep: a django-q2 schedule, run every minute by the light cluster.

``generation.tasks.runs_sweep`` recovers runs orphaned by a dead worker and queues again the
runs left ``queued`` with no task, even when no new task arrives to trigger a sweep.
"""

from typing import Any

from django.db import migrations
from django.utils import timezone

SWEEP_NAME = "hoffdesk-sweep"


def create_sweep_schedule(apps: Any, schema_editor: Any) -> None:
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=SWEEP_NAME,
        defaults={
            "func": "generation.tasks.runs_sweep",
            "schedule_type": "I",  # Schedule.MINUTES
            "minutes": 1,
            "repeats": -1,
            # The light cluster's scheduler takes schedules named for it; the GPU cluster's
            # takes only those with no cluster, so a long GPU run never delays the sweep.
            "cluster": "light",
            "next_run": timezone.now(),
        },
    )


def delete_sweep_schedule(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_q", "Schedule").objects.filter(name=SWEEP_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("generation", "0005_add_worker_heartbeat"),
        # The schedule's cluster field (0014) and every later change to the model.
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(create_sweep_schedule, delete_sweep_schedule)]
