"""Faults under a real worker: the database server restarted, the worker killed while it saves
the images, a full disk while saving, a worker stopped (SIGSTOP) for longer than
``HOFFDESK_STALE_AFTER`` and then resumed. Each ends in a clear state with a message, nothing
lost, nothing half-written, and recovers with no hand repair.

The worker that is slow to save (to open a window for a kill or a stop) is a real ``qcluster``
started through ``SLOW_SAVE_QCLUSTER`` (tests/generation/conftest.py): it wraps the candidates storage before django-q2
forks its worker processes. There is no test hook in the application's code.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from generation.models import GenerationRun
from generation.recovery import _process_alive
from generation.services import run_submit
from tests.conftest import needs_pg_ctl, pg_ctl, wait_finished, wait_for, worker_env
from tests.generation.conftest import can_make_uts_namespace
from tests.test_health import UNREACHABLE, get_healthz, serve_wsgi

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

Status = GenerationRun.Status


def run_files(run: GenerationRun) -> list[Path]:
    folder = Path(settings.CANDIDATES_DIR) / "runs" / f"{run.pk:06d}"
    return sorted(folder.glob("*.png")) if folder.exists() else []


def assert_made_exactly_once(run: GenerationRun, attempts: int) -> None:
    """Succeeded in attempt ``attempts``, with exactly its candidates, and on disk exactly the
    files its rows point at (none left by another attempt, none half-written)."""
    assert run.status == Status.SUCCEEDED, run.error
    assert run.attempts == attempts
    candidates = list(run.candidates.order_by("index"))
    assert [(c.index, c.seed) for c in candidates] == [(i, run.base_seed + i) for i in range(run.count)]
    names = [Path(str(c.image.name)).name for c in candidates]
    assert all(name.startswith(f"a{attempts}-") for name in names)
    assert [p.name for p in run_files(run)] == sorted(names)


def worker_pid(run: GenerationRun) -> int:
    return int(run.worker.rsplit(":", 1)[1])


# --- the worker killed while it saves the images ------------------------------------------------


def test_a_worker_killed_while_saving_leaves_no_rows_and_the_next_attempt_makes_them_once(
    start_worker, start_slow_saver, article
) -> None:
    slow, marker = start_slow_saver(pause=60)
    run = run_submit(article=article, model="tiny-sd", seed=500, count=3, width=64, height=64, steps=2)
    wait_for(marker.exists, 90, "the first image to be saved", slow)

    run.refresh_from_db()
    assert run.status == Status.RUNNING and run.attempts == 1
    assert run.candidates.count() == 0
    assert [p.name for p in run_files(run)] == ["a1-00-seed500.png"]  # one image written, then kill
    pid = worker_pid(run)
    slow.kill_hard()
    wait_for(lambda: not _process_alive(pid), 30, "the killed worker process to be gone")

    worker = start_worker()  # its start-up sweep finds the dead worker's run and queues it again
    wait_finished(run, worker=worker)

    assert_made_exactly_once(run, attempts=2)  # the first attempt's file is gone
    assert f"run {run.pk}: worker" in worker.output() and "queued again" in worker.output()


# --- a full disk while saving ---------------------------------------------------------------------


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A real full disk: the candidates folder on a 64 KiB tmpfs (mounting needs root; CI runs
    as root). Where mounting is refused, the test is skipped: the same error from a storage
    that raises ``OSError(ENOSPC)`` is covered by test_stuck_runs.py's
    ``test_a_full_disk_while_saving_fails_the_run_and_leaves_no_files``."""
    folder = Path(settings.CANDIDATES_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command here: the ENOSPC storage test in test_stuck_runs.py covers a full disk")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({mounted.stderr.strip() or mounted.returncode}): "
            "the ENOSPC storage test in test_stuck_runs.py covers a full disk"
        )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_while_saving_fails_the_run_with_the_reason_and_no_half_written_file(
    start_worker, small_disk, article
) -> None:
    """On a real full disk (a 64 KiB tmpfs): a 256x256 PNG does not fit, so the first save
    fails part-way. The run fails saying so, with no rows and no partial file; once there is
    room again the same run made again succeeds on the same worker."""
    worker = start_worker()
    params: dict[str, Any] = {
        "article": article,
        "model": "tiny-sd",
        "seed": 600,
        "count": 3,
        "width": 256,
        "height": 256,
        "steps": 2,
    }
    run = run_submit(**params)
    wait_finished(run, worker=worker)

    assert run.status == Status.FAILED
    assert "Could not save the images: No space left on device" in run.error
    assert "Free some space" in run.error
    assert run.candidates.count() == 0
    assert run_files(run) == []  # the half-written PNG was deleted too

    subprocess.run(["mount", "-o", "remount,size=16m", "tmpfs", str(small_disk)], check=True)  # room again
    again = run_submit(**params)
    wait_finished(again, worker=worker)
    assert_made_exactly_once(again, attempts=1)


# --- a worker stopped for longer than HOFFDESK_STALE_AFTER, then resumed ---------------------------


@pytest.mark.skipif(not can_make_uts_namespace(), reason="needs `unshare --uts` (root) to run a worker as another host")
def test_a_worker_stopped_past_stale_after_loses_its_run_once_and_deletes_what_it_wrote_on_resuming(
    start_worker, start_slow_saver, article
) -> None:
    """The stopped worker stands for another GPU box (its own host name, so only its heartbeat
    speaks for it). It is stopped between two saves, its run goes to a worker here and
    succeeds in attempt 2; resumed, the stopped worker saves its last images under its own
    attempt's names, learns it lost, and deletes them: the winner's rows and files stay
    exactly as they were."""
    stale = {"HOFFDESK_STALE_AFTER": "2"}
    box, marker = start_slow_saver(pause=1, hostname="gpu-box-2", **stale)
    run = run_submit(article=article, model="tiny-sd", seed=700, count=3, width=64, height=64, steps=2)
    wait_for(marker.exists, 90, "the first image to be saved", box)
    os.killpg(box.proc.pid, signal.SIGSTOP)
    run.refresh_from_db()
    assert run.worker.startswith("gpu-box-2:") and run.status == Status.RUNNING

    wait_for(
        lambda: GenerationRun.objects.filter(GenerationRun.stale_heartbeat(2.5), pk=run.pk).exists(),
        30,
        "the stopped worker's heartbeat to be stale",
    )
    here = start_worker(**stale)  # its start-up sweep gives the run to this worker
    wait_finished(run, worker=here)
    assert_made_exactly_once(run, attempts=2)
    winner = {p.name: p.read_bytes() for p in run_files(run)}

    os.killpg(box.proc.pid, signal.SIGCONT)
    wait_for(lambda: f"run {run.pk}: attempt 1 lost the run" in box.output(), 60, "the resumed worker to give up", box)

    run.refresh_from_db()
    assert_made_exactly_once(run, attempts=2)
    assert {p.name: p.read_bytes() for p in run_files(run)} == winner
    assert len(marker.read_text().split()) == 3, "the resumed worker should have saved its remaining images"


# --- the database server restarted under a running worker -----------------------------------------


@needs_pg_ctl
def test_the_database_restarted_under_a_running_worker_the_run_still_succeeds_once(start_worker, article) -> None:
    worker = start_worker()
    run = run_submit(article=article, model="tiny-sd", seed=800, count=2, width=128, height=128, steps=60)

    def midway() -> bool:
        run.refresh_from_db()
        return run.status == Status.RUNNING and run.progress_step >= 3

    wait_for(midway, 90, "the run to be midway", worker)
    pg_ctl("restart", "-m", "fast")
    connection.close()  # this test's own connection was cut too

    wait_finished(run, timeout=120, worker=worker)
    assert_made_exactly_once(run, attempts=1)
    log = worker.output()
    assert "writing progress failed; going on" in log or "heartbeat failed; trying again" in log

    # The worker goes on taking runs after the restart.
    later = run_submit(article=article, model="tiny-sd", seed=801, count=1, width=64, height=64, steps=2)
    wait_finished(later, timeout=90, worker=worker)
    assert_made_exactly_once(later, attempts=1)


@needs_pg_ctl
def test_healthz_answers_503_while_postgresql_is_stopped_and_200_again_once_it_is_back() -> None:
    """The same server process before, during and after a PostgreSQL outage: its kept connection
    breaks, /healthz says so, and the next request after the restart connects again."""
    proc, port = serve_wsgi(worker_env())
    try:
        status, body = get_healthz(port)
        assert status == 200 and body["database"] == "ok", body
        connection.close()
        pg_ctl("stop", "-m", "fast")
        try:
            assert get_healthz(port) == (503, UNREACHABLE)
        finally:
            pg_ctl("start")
        status, body = get_healthz(port)
        assert status == 200 and body["database"] == "ok", body
    finally:
        proc.terminate()
        proc.wait(timeout=10)
