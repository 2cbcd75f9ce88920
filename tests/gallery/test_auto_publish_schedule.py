"""The auto-publish job is a django-q2 schedule the light cluster runs every minute (gallery
migration 0008), pointing at a function that exists."""

from __future__ import annotations

import importlib

import pytest
from django_q.models import Schedule


@pytest.mark.django_db
def test_the_auto_publish_job_runs_every_minute_on_the_light_cluster() -> None:
    schedule = Schedule.objects.get(name="hoffdesk-auto-publish")
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats, schedule.cluster) == (
        Schedule.MINUTES, 1, -1, "light"
    )  # fmt: skip
    module, function = schedule.func.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), function))
