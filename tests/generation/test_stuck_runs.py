"""No run is stuck forever: every failure after the claim ends the run ``failed`` with a reason,
a broken sweep never stops the claim, and a periodic sweep (a django-q2 schedule on the light
cluster) queues again a run whose task was lost, with no new task arriving."""

from __future__ import annotations

import errno
import importlib
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.core.files.base import ContentFile, File
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from generation import services, tasks
from generation.models import Candidate, GenerationRun, candidate_file_name, candidate_storage
from generation.services import run_submit
from tests.conftest import wait_finished, wait_for

Status = GenerationRun.Status
GPU_QUEUE = settings.Q_CLUSTER["name"]
SWEEP_MIGRATION = "generation.migrations.0006_sweep_schedule"


def run_files(run: GenerationRun) -> list[Path]:
    folder = Path(settings.CANDIDATES_DIR) / "runs" / f"{run.pk:06d}"
    return sorted(folder.glob("*.png")) if folder.exists() else []


def tasks_for(run: GenerationRun) -> list[OrmQ]:
    """The GPU queue's broker entries for this run (``task_name`` is ``run-<id>``)."""
    return [entry for entry in OrmQ.objects.filter(key=GPU_QUEUE) if entry.name() == f"run-{run.pk}"]


def submit_lost_run(article: Any, monkeypatch: pytest.MonkeyPatch, **params: Any) -> GenerationRun:
    """A run committed ``queued`` whose enqueue never happened: the process died between the
    commit and the on_commit callback. It has been waiting longer than the sweep's threshold."""
    with monkeypatch.context() as m:
        m.setattr(services, "run_enqueue", lambda run: None)
        run = run_submit(article=article, **params)
    GenerationRun.objects.filter(pk=run.pk).update(queued_at=timezone.now() - timedelta(minutes=10))
    run.refresh_from_db()
    assert run.status == Status.QUEUED and tasks_for(run) == []
    return run


class DiskFillsUp:
    """The candidates storage on a disk that is full after ``room`` files: ``save`` raises
    ``OSError(ENOSPC)`` as a full local disk does. (This machine cannot make a full disk for a
    test, so a storage that raises the same error stands in for one.)"""

    def __init__(self, room: int) -> None:
        self.real = candidate_storage()
        self.room = room

    def save(self, name: str, content: File[Any], max_length: int | None = None) -> str:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device", name)
        self.room -= 1
        return self.real.save(name, content, max_length=max_length)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.real, attr)


# --- after the claim, any error ends the run failed ---------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_get_profile_raising_after_the_claim_fails_the_run_with_a_reason(article, monkeypatch) -> None:
    run = run_submit(article=article, model="tiny-sd", seed=3, count=1, width=64, height=64, steps=1)

    def broken_profile(name: str) -> Any:
        raise RuntimeError("profile registry is broken")

    monkeypatch.setattr(tasks, "get_profile", broken_profile)

    assert tasks.run_generate(run.pk) == "failed"

    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert run.attempts == 1 and run.finished_at is not None
    assert "profile registry is broken" in run.error
    assert run.candidates.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_full_disk_while_saving_fails_the_run_and_leaves_no_files(article, monkeypatch) -> None:
    """The first image is saved, the second finds the disk full (``OSError(ENOSPC)`` from a
    storage that stands in for a full disk): the run fails with that reason, no candidate rows,
    and the file the attempt did write is deleted."""
    run = run_submit(article=article, model="tiny-sd", seed=11, count=3, width=64, height=64, steps=2)
    disk = DiskFillsUp(room=1)
    monkeypatch.setattr(tasks, "candidate_storage", lambda: disk)

    assert tasks.run_generate(run.pk) == "failed"

    run.refresh_from_db()
    assert disk.room == 0, "the first image should have been saved before the disk filled up"
    assert run.status == Status.FAILED
    assert "No space left on device" in run.error
    assert "Could not save the images" in run.error
    assert Candidate.objects.filter(run=run).count() == 0
    assert run_files(run) == []


@pytest.mark.django_db(transaction=True)
def test_a_full_disk_for_the_thumbnails_leaves_the_run_succeeded_and_the_web_makes_them(
    article, monkeypatch, editor_client
) -> None:
    """The images and rows are saved; then the disk is full for the grid's thumbnails, which the
    worker makes after the commit (``OSError(ENOSPC)`` from a storage standing in for the full
    disk). The run stays succeeded with its candidates, and a tile asking later gets its
    thumbnail made by the web."""
    import generation.thumbnails
    from gallery.templatetags.gallery_tags import thumb_url
    from generation.thumbnails import THUMBNAIL_WIDTHS, thumbnail_name

    run = run_submit(article=article, model="tiny-sd", seed=13, count=2, width=64, height=64, steps=2)
    full = DiskFillsUp(room=0)
    with monkeypatch.context() as m:
        m.setattr(generation.thumbnails, "candidate_storage", lambda: full)
        assert tasks.run_generate(run.pk) == "succeeded"

    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED and run.error == ""
    candidates = list(run.candidates.order_by("index"))
    assert len(candidates) == 2 and len(run_files(run)) == 2
    storage = candidate_storage()
    assert not any(storage.exists(thumbnail_name(c.sha256, w)) for c in candidates for w in THUMBNAIL_WIDTHS)
    for candidate in candidates:
        response = editor_client.get(thumb_url(candidate, 256))
        assert response.status_code == 200 and response["Content-Type"] == "image/webp"
        assert storage.exists(thumbnail_name(candidate.sha256, 256))


@pytest.mark.django_db(transaction=True)
def test_a_sweep_that_raises_before_the_claim_does_not_stop_the_claim(article, monkeypatch) -> None:
    run = run_submit(article=article, model="tiny-sd", seed=21, count=1, width=64, height=64, steps=2)

    def broken_sweep() -> list[int]:
        raise RuntimeError("database hiccup during the orphan sweep")

    monkeypatch.setattr(tasks, "runs_recover_orphaned", broken_sweep)

    assert tasks.run_generate(run.pk) == "succeeded"

    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED, run.error
    assert run.attempts == 1
    assert run.candidates.count() == 1


@pytest.mark.skipif(
    connection.vendor != "sqlite",
    reason="locks the SQLite file from a second connection; PostgreSQL restarts are in test_faults.py",
)
@pytest.mark.django_db(transaction=True)
def test_a_failure_written_while_the_database_is_locked_is_recorded_by_the_worker_beat_later(
    article, settings, monkeypatch
) -> None:
    """The database refuses every write (another connection holds SQLite's exclusive lock) when
    the worker tries to mark a run failed: the run stays ``running`` under this live process,
    which no sweep on this host takes away. Once the database answers, the worker's beat
    thread records the failure with its reason, and this attempt's files are deleted."""
    from generation.health import WorkerBeat

    run = run_submit(article=article, model="tiny-sd", seed=51, count=1, width=64, height=64, steps=2)
    assert run.claim(settings.HOFFDESK_RUN_MAX_ATTEMPTS)
    written = candidate_storage().save(candidate_file_name(run.pk, 0, run.seeds[0], attempt=1), ContentFile(b"png"))
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 0.2)  # busy timeout, seconds
    connection.close()
    settings.HOFFDESK_HEARTBEAT_INTERVAL = 0.2

    locker = sqlite3.connect(connection.settings_dict["NAME"])
    locker.execute("BEGIN EXCLUSIVE")
    try:
        failure = RuntimeError("the profile table is broken")
        assert tasks._fail_after_error(run, failure, attempt=run.attempts, tries=1) == "failed"
        status = locker.execute("SELECT status FROM generation_generationrun WHERE id = ?", (run.pk,)).fetchone()
        assert status == ("running",), "the write should have been refused while the lock is held"
    finally:
        locker.rollback()
        locker.close()
    connection.close()

    beat = WorkerBeat("test", chores=[tasks.runs_record_unrecorded_failures])
    beat.start()
    try:
        run.refresh_from_db()
        wait_finished(run, timeout=20)
    finally:
        beat.stopped.set()
        beat.join()
    assert run.status == Status.FAILED and run.attempts == 1
    assert "the profile table is broken" in run.error
    assert not candidate_storage().exists(written)
    assert len(tasks.unrecorded_failures) == 0


# --- the periodic sweep --------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_sweep_schedule_exists_on_the_light_cluster_after_migrate() -> None:
    schedule = Schedule.objects.get(name="hoffdesk-sweep")
    assert schedule.func == "generation.tasks.runs_sweep"
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (Schedule.MINUTES, 1, -1)
    assert schedule.cluster == "light"


@pytest.mark.django_db
def test_the_schedule_migration_is_idempotent_and_reversible() -> None:
    migration = importlib.import_module(SWEEP_MIGRATION)
    migration.create_sweep_schedule(django_apps, None)
    migration.create_sweep_schedule(django_apps, None)
    assert Schedule.objects.filter(name="hoffdesk-sweep").count() == 1
    migration.delete_sweep_schedule(django_apps, None)
    assert not Schedule.objects.filter(name="hoffdesk-sweep").exists()


@pytest.mark.django_db(transaction=True)
def test_the_sweep_leaves_a_fresh_queued_run_alone(article, monkeypatch) -> None:
    """Between a submit's commit and its on_commit enqueue the run is briefly queued with no
    task: a sweep in that moment must not count it lost."""
    run = submit_lost_run(article, monkeypatch, model="tiny-sd", seed=1, count=1, width=64, height=64, steps=1)
    GenerationRun.objects.filter(pk=run.pk).update(queued_at=timezone.now())

    tasks.runs_sweep()

    assert tasks_for(run) == []


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_queued_run_whose_task_was_lost_is_enqueued_once_by_the_sweep_and_succeeds(
    start_worker, article, monkeypatch
) -> None:
    run = submit_lost_run(article, monkeypatch, model="tiny-sd", seed=31, count=2, width=64, height=64, steps=2)

    tasks.runs_sweep()
    assert len(tasks_for(run)) == 1
    tasks.runs_sweep()  # its task is waiting in the broker: not lost, not enqueued again
    assert len(tasks_for(run)) == 1

    worker = start_worker()
    wait_finished(run, worker=worker)
    assert run.status == Status.SUCCEEDED, run.error
    assert run.attempts == 1
    assert run.candidates.count() == 2


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_light_cluster_sweeps_on_its_own_and_lost_and_orphaned_runs_succeed(
    start_worker, article, monkeypatch
) -> None:
    """No task is enqueued by this test: the light cluster's scheduler runs the sweep, the sweep
    queues on the GPU queue both a run whose task was lost and a run left ``running`` by a GPU
    worker on another host that went silent, and the GPU worker makes them."""
    # A transactional test's flush removes what the data migration made: make it again.
    importlib.import_module(SWEEP_MIGRATION).create_sweep_schedule(django_apps, None)
    Schedule.objects.filter(name="hoffdesk-sweep").update(next_run=timezone.now() - timedelta(seconds=1))
    run = submit_lost_run(article, monkeypatch, model="tiny-sd", seed=41, count=1, width=64, height=64, steps=2)
    orphan = submit_lost_run(article, monkeypatch, model="tiny-sd", seed=43, count=1, width=64, height=64, steps=2)
    long_ago = timezone.now() - timedelta(minutes=10)
    GenerationRun.objects.filter(pk=orphan.pk).update(
        status=Status.RUNNING, worker="gpu-box-that-died:4242", attempts=1, started_at=long_ago, heartbeat_at=long_ago
    )
    assert OrmQ.objects.count() == 0

    light = start_worker(Q_CLUSTER_NAME="light")

    # The light cluster alone: its sweep queues both on the GPU queue before any GPU worker runs.
    def both_queued() -> bool:
        orphan_queued = GenerationRun.objects.filter(pk=orphan.pk, status=Status.QUEUED).exists()
        return orphan_queued and len(tasks_for(run)) == 1

    wait_for(both_queued, 90, "the light cluster's sweep", light)
    assert "gpu-box-that-died:4242 is gone (silent heartbeat)" in light.output()
    assert len(tasks_for(orphan)) == 1

    gpu = start_worker()
    try:
        wait_finished(run, timeout=150, worker=gpu)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- light worker log ---\n{light.output()[-4000:]}") from None
    assert run.status == Status.SUCCEEDED, run.error
    assert run.candidates.count() == 1
    wait_finished(orphan, timeout=60, worker=gpu)
    assert orphan.status == Status.SUCCEEDED, orphan.error
    assert orphan.attempts == 2 and orphan.candidates.count() == 1
    assert Schedule.objects.get(name="hoffdesk-sweep").task, "the schedule never made a task"
