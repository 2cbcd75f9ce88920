"""Crash recovery and its races: who counts as gone, heartbeats on the database's clock, a
requeue that re-checks the heartbeat, a heartbeat thread that survives database errors, and a
superseded attempt that can never touch the winner's files."""

from __future__ import annotations

import hashlib
import io
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import OperationalError
from django.utils import timezone
from PIL import Image

from generation import recovery
from generation.models import Candidate, GenerationRun
from generation.recovery import runs_recover_orphaned
from generation.services import run_discard_files, run_submit

Status = GenerationRun.Status
OTHER_HOST_WORKER = "gpu-box-2:4242"


@pytest.fixture
def run(article) -> GenerationRun:
    return run_submit(article=article, model="tiny-sd", seed=5, count=2, width=64, height=64, steps=4)


@pytest.fixture
def stale_after(settings: Any) -> float:
    settings.HOFFDESK_STALE_AFTER = 120.0
    return 120.0


@pytest.fixture
def live_process() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def make_stale(run: GenerationRun) -> None:
    GenerationRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    run.refresh_from_db()


def status_of(run: GenerationRun) -> str:
    run.refresh_from_db()
    return run.status


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --- A: on this host, a live pid means a live worker, whatever its heartbeat -------------------


@pytest.mark.django_db
def test_a_live_worker_on_this_host_keeps_its_run_even_with_a_stale_heartbeat(run, live_process, stale_after) -> None:
    assert run.claim(max_attempts=3, worker=f"{socket.gethostname()}:{live_process.pid}")
    make_stale(run)

    assert runs_recover_orphaned() == []
    assert status_of(run) == Status.RUNNING

    live_process.kill()
    live_process.wait()
    assert runs_recover_orphaned() == [run.pk]
    assert status_of(run) == Status.QUEUED and run.attempts == 1


@pytest.mark.django_db
def test_a_killed_but_unreaped_worker_on_this_host_counts_as_gone(run, live_process, stale_after) -> None:
    assert run.claim(max_attempts=3, worker=f"{socket.gethostname()}:{live_process.pid}")
    live_process.kill()  # a zombie until waited for
    wait_until(lambda: not recovery._process_alive(live_process.pid), 5, "the process to become a zombie")

    assert runs_recover_orphaned() == [run.pk]
    assert status_of(run) == Status.QUEUED


@pytest.mark.django_db
def test_a_pid_reused_by_a_process_started_after_the_claim_is_not_the_worker(article, stale_after) -> None:
    run = run_submit(article=article, model="tiny-sd", seed=5, count=1, width=64, height=64, steps=4)
    assert run.claim(max_attempts=3, worker=f"{socket.gethostname()}:1")
    # The claim was an hour ago; the process now holding the worker's pid started just now.
    GenerationRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(hours=1))
    proc = subprocess.Popen(["sleep", "60"])
    try:
        GenerationRun.objects.filter(pk=run.pk).update(worker=f"{socket.gethostname()}:{proc.pid}")
        assert runs_recover_orphaned() == [run.pk]
        assert status_of(run) == Status.QUEUED
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.django_db
def test_a_worker_on_another_host_is_gone_only_when_its_heartbeat_is_stale(run, stale_after) -> None:
    assert run.claim(max_attempts=3, worker=OTHER_HOST_WORKER)
    assert runs_recover_orphaned() == []
    make_stale(run)
    assert runs_recover_orphaned() == [run.pk]
    assert status_of(run) == Status.QUEUED


@pytest.mark.django_db
def test_the_sweep_log_names_the_worker_that_was_gone(run, stale_after, caplog) -> None:
    """The requeue clears the run's worker field; the log line must still say which it was."""
    assert run.claim(max_attempts=3, worker=OTHER_HOST_WORKER)
    make_stale(run)
    with caplog.at_level("WARNING", logger="generation.recovery"):
        assert runs_recover_orphaned() == [run.pk]
    assert f"worker {OTHER_HOST_WORKER} is gone" in caplog.text


# --- C: heartbeats on the database's clock -------------------------------------------------------


def shifted_clock(monkeypatch: pytest.MonkeyPatch, by: timedelta) -> Callable[[], None]:
    real_now: Callable[[], datetime] = timezone.now
    monkeypatch.setattr("django.utils.timezone.now", lambda: real_now() + by)
    return lambda: monkeypatch.setattr("django.utils.timezone.now", real_now)


@pytest.mark.django_db
def test_a_worker_whose_clock_is_behind_still_beats_fresh(run, monkeypatch, stale_after) -> None:
    assert run.claim(max_attempts=3, worker=OTHER_HOST_WORKER)
    make_stale(run)

    restore = shifted_clock(monkeypatch, -timedelta(minutes=10))  # the worker's clock
    assert run.heartbeat()
    assert run.record_progress(1, 4)
    restore()

    assert runs_recover_orphaned() == []
    assert status_of(run) == Status.RUNNING


@pytest.mark.django_db
def test_a_sweeper_whose_clock_is_ahead_does_not_take_a_fresh_run(run, monkeypatch, stale_after) -> None:
    assert run.claim(max_attempts=3, worker=OTHER_HOST_WORKER)
    assert run.heartbeat()

    shifted_clock(monkeypatch, timedelta(minutes=10))  # the sweeper's clock
    assert runs_recover_orphaned() == []
    assert status_of(run) == Status.RUNNING


@pytest.mark.django_db
def test_a_claim_by_a_worker_whose_clock_is_behind_starts_with_a_fresh_heartbeat(run, monkeypatch, stale_after) -> None:
    restore = shifted_clock(monkeypatch, -timedelta(minutes=10))
    assert run.claim(max_attempts=3, worker=OTHER_HOST_WORKER)
    restore()
    assert runs_recover_orphaned() == []
    assert status_of(run) == Status.RUNNING


# --- D: the requeue re-checks the heartbeat in its UPDATE -----------------------------------------


@pytest.mark.django_db
def test_a_worker_that_beats_between_the_sweeps_read_and_its_update_keeps_its_run(
    run, monkeypatch, stale_after
) -> None:
    assert run.claim(max_attempts=3, worker=OTHER_HOST_WORKER)
    make_stale(run)
    worker_copy = GenerationRun.objects.get(pk=run.pk)
    judge = recovery._worker_is_gone

    def judge_then_worker_beats(*args: Any, **kwargs: Any) -> Any:
        verdict = judge(*args, **kwargs)
        assert verdict, "the sweep read a stale heartbeat"
        assert worker_copy.heartbeat()  # the worker was only slow, and beats now
        return verdict

    monkeypatch.setattr(recovery, "_worker_is_gone", judge_then_worker_beats)

    assert runs_recover_orphaned() == []
    assert status_of(run) == Status.RUNNING and run.attempts == 1


@pytest.mark.django_db
def test_the_last_attempt_is_not_failed_when_its_worker_beat_after_the_read(
    run, monkeypatch, settings, stale_after
) -> None:
    assert run.claim(max_attempts=1, worker=OTHER_HOST_WORKER)
    make_stale(run)
    worker_copy = GenerationRun.objects.get(pk=run.pk)
    judge = recovery._worker_is_gone

    def judge_then_worker_beats(*args: Any, **kwargs: Any) -> Any:
        verdict = judge(*args, **kwargs)
        assert worker_copy.heartbeat()
        return verdict

    monkeypatch.setattr(recovery, "_worker_is_gone", judge_then_worker_beats)
    settings.HOFFDESK_RUN_MAX_ATTEMPTS = 1

    assert runs_recover_orphaned() == []
    assert status_of(run) == Status.RUNNING and run.error == ""


@pytest.mark.django_db
def test_requeue_orphaned_with_a_staleness_limit_refuses_a_fresh_heartbeat(run) -> None:
    assert run.claim(max_attempts=3, worker=OTHER_HOST_WORKER)
    make_stale(run)
    stale_copy = GenerationRun.objects.get(pk=run.pk)
    assert GenerationRun.objects.get(pk=run.pk).heartbeat()

    assert not stale_copy.requeue_orphaned(3, stale_after=120)
    assert status_of(run) == Status.RUNNING
    make_stale(run)
    assert stale_copy.requeue_orphaned(3, stale_after=120)
    assert status_of(run) == Status.QUEUED


# --- B: the heartbeat thread survives database errors ---------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_logs_a_database_error_and_keeps_beating(run, settings, monkeypatch, caplog) -> None:
    from generation.tasks import _Heartbeat

    settings.HOFFDESK_HEARTBEAT_INTERVAL = 0.05
    assert run.claim(max_attempts=3, worker=OTHER_HOST_WORKER)
    make_stale(run)
    before = run.heartbeat_at
    assert before is not None

    real_heartbeat = GenerationRun.heartbeat
    calls: list[int] = []
    lock = threading.Lock()

    def flaky_heartbeat(self: GenerationRun) -> bool:
        with lock:
            calls.append(1)
            first = len(calls) == 1
        if first:
            raise OperationalError("database is locked")
        return real_heartbeat(self)

    monkeypatch.setattr(GenerationRun, "heartbeat", flaky_heartbeat)
    beat = _Heartbeat(run)
    beat.start()
    try:

        def beat_again() -> bool:
            run.refresh_from_db()
            return len(calls) >= 3 and run.heartbeat_at is not None and run.heartbeat_at > before

        wait_until(beat_again, 10, "a heartbeat after the database error")
        assert beat.is_alive()
    finally:
        beat.stopped.set()
        beat.join(timeout=10)
    assert not beat.is_alive()
    assert "database is locked" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_stops_once_the_run_is_another_attempts(run, settings) -> None:
    from generation.tasks import _Heartbeat

    settings.HOFFDESK_HEARTBEAT_INTERVAL = 0.05
    assert run.claim(max_attempts=3, worker=OTHER_HOST_WORKER)
    beat = _Heartbeat(run)
    beat.start()
    try:
        assert GenerationRun.objects.get(pk=run.pk).requeue_orphaned(3)
        beat.join(timeout=10)
        assert not beat.is_alive()
    finally:
        beat.stopped.set()
        beat.join(timeout=10)


# --- E: each attempt writes its own files; a loser deletes its own, never the winner's ------------


def tiny_png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def fake_result(run: GenerationRun, colour: tuple[int, int, int]) -> Any:
    from generation.engine.generate import GeneratedImage, GenerationResult

    images = []
    for index, seed in enumerate(run.seeds):
        png = tiny_png((colour[0], colour[1], (colour[2] + index) % 256))
        images.append(
            GeneratedImage(index=index, seed=seed, png=png, sha256=hashlib.sha256(png).hexdigest(), width=8, height=8)
        )
    return GenerationResult(images=images, load_seconds=0.0, inference_seconds=0.1)


def run_pngs(run: GenerationRun) -> set[str]:
    folder = Path(django_settings.CANDIDATES_DIR) / "runs" / f"{run.pk:06d}"
    return {f"runs/{run.pk:06d}/{p.name}" for p in folder.glob("*.png")} if folder.exists() else set()


def read(name: str) -> bytes:
    return (Path(django_settings.CANDIDATES_DIR) / name).read_bytes()


@pytest.mark.django_db
def test_a_superseded_attempt_never_touches_the_winners_files(run) -> None:
    from generation.tasks import _record_candidates

    assert run.claim(max_attempts=3, worker="box-1:100")
    first_attempt = GenerationRun.objects.get(pk=run.pk)
    assert run.requeue_orphaned(3)  # attempt 1 went silent, but is only slow
    assert run.claim(max_attempts=3, worker="box-2:200")
    second_attempt = GenerationRun.objects.get(pk=run.pk)
    assert (first_attempt.attempts, second_attempt.attempts) == (1, 2)

    winner = fake_result(run, (0, 128, 0))
    assert _record_candidates(second_attempt, winner) == Status.SUCCEEDED
    winners_files = run_pngs(run)
    rows = list(Candidate.objects.filter(run=run).order_by("index"))
    assert {str(c.image.name) for c in rows} == winners_files and len(winners_files) == 2

    loser = fake_result(run, (255, 0, 0))
    assert _record_candidates(first_attempt, loser) == Status.SUCCEEDED  # what it finds the run to be

    assert run_pngs(run) == winners_files, "the loser's files are deleted, the winner's kept"
    rows = list(Candidate.objects.filter(run=run).order_by("index"))
    assert [read(str(c.image.name)) for c in rows] == [image.png for image in winner.images]
    assert [c.sha256 for c in rows] == [image.sha256 for image in winner.images]
    assert [hashlib.sha256(read(str(c.image.name))).hexdigest() for c in rows] == [c.sha256 for c in rows]


@pytest.mark.django_db
def test_a_loser_finishing_first_leaves_the_winner_free_to_record(run) -> None:
    from generation.tasks import _record_candidates

    assert run.claim(max_attempts=3, worker="box-1:100")
    first_attempt = GenerationRun.objects.get(pk=run.pk)
    assert run.requeue_orphaned(3)
    assert run.claim(max_attempts=3, worker="box-2:200")
    second_attempt = GenerationRun.objects.get(pk=run.pk)

    assert _record_candidates(first_attempt, fake_result(run, (255, 0, 0))) == Status.RUNNING
    assert run_pngs(run) == set()
    winner = fake_result(run, (0, 0, 255))
    assert _record_candidates(second_attempt, winner) == Status.SUCCEEDED
    rows = list(Candidate.objects.filter(run=run).order_by("index"))
    assert run_pngs(run) == {str(c.image.name) for c in rows}
    assert [read(str(c.image.name)) for c in rows] == [image.png for image in winner.images]


@pytest.mark.django_db
def test_candidate_file_names_carry_the_attempt() -> None:
    from generation.models import candidate_file_name

    assert candidate_file_name(12, 0, 5, attempt=2) == "runs/000012/a2-00-seed5.png"
    assert candidate_file_name(12, 0, 5, attempt=1) != candidate_file_name(12, 0, 5, attempt=2)


@pytest.mark.django_db
def test_discarding_a_runs_files_removes_every_attempts_unrecorded_files(run) -> None:
    from django.core.files.base import ContentFile

    from generation.models import candidate_file_name, candidate_storage

    storage = candidate_storage()
    assert run.claim(max_attempts=3, worker="box-1:100")
    assert run.requeue_orphaned(3)
    assert run.claim(max_attempts=3, worker="box-2:200")
    strays = [candidate_file_name(run.pk, i, s, attempt=a) for a in (1, 2) for i, s in enumerate(run.seeds)]
    legacy = f"runs/{run.pk:06d}/00-seed{run.seeds[0]}.png"  # named before names carried the attempt
    for name in [*strays, legacy]:
        storage.save(name, ContentFile(b"png"))
    kept = candidate_file_name(run.pk, 1, run.seeds[1], attempt=2)
    Candidate.objects.create(run=run, index=1, seed=run.seeds[1], image=kept, width=8, height=8, sha256="0" * 64)

    run_discard_files(run=run)

    assert run_pngs(run) == {kept}
