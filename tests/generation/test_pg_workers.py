"""Several GPU machines on one queue: two real ``qcluster`` processes on one PostgreSQL database
with django-q2's ORM broker, as two GPU boxes would run them. Every run is made by exactly one
worker, exactly once, and a cluster killed with ``kill -9`` mid-run loses nothing.

PostgreSQL only (``scripts/test-postgres.sh``): SQLite is the one-machine setup.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from generation.models import Candidate, GenerationRun, WorkerHeartbeat
from generation.recovery import _process_alive
from generation.services import run_submit
from tests.conftest import Worker, wait_finished, wait_for
from tests.generation.conftest import can_make_uts_namespace

pytestmark = [
    pytest.mark.worker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="several GPU clusters share a queue only on PostgreSQL (run scripts/test-postgres.sh)",
    ),
]

Status = GenerationRun.Status
# Two clusters on a 2-core machine: one torch thread each, so neither starves the other.
ONE_THREAD = {"HOFFDESK_TORCH_THREADS": "1"}


def run_files(run: GenerationRun) -> list[Path]:
    folder = Path(settings.CANDIDATES_DIR) / "runs" / f"{run.pk:06d}"
    return sorted(folder.glob("*.png")) if folder.exists() else []


def start_two_clusters(start_worker: Callable[..., Worker]) -> tuple[Worker, Worker]:
    """Two GPU clusters, each up (its worker process beating) before any run is submitted."""
    first, second = start_worker(**ONE_THREAD), start_worker(**ONE_THREAD)

    def both_up() -> bool:
        beating = {int(w.rsplit(":", 1)[1]) for w in WorkerHeartbeat.objects.values_list("worker", flat=True)}
        return {cluster_of(pid, first, second) for pid in beating} >= {first, second}

    wait_for(both_up, 90, "both clusters' worker processes to beat", first)
    return first, second


def cluster_of(pid: int, *clusters: Worker) -> Worker | None:
    """The cluster whose process group holds ``pid`` (each cluster is started in a session of
    its own), or None when the process is gone."""
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return None
    return next((cluster for cluster in clusters if cluster.proc.pid == group), None)


def claims_in(log: str, run: GenerationRun) -> list[str]:
    """The claim lines of ``run`` in a worker log ("run 12: 2 x 64x64 with ... (attempt 1)")."""
    return re.findall(rf"run {run.pk}: \d+ x .*\(attempt (\d+)\)", log)


def assert_made_exactly_once(run: GenerationRun) -> None:
    assert run.status == Status.SUCCEEDED, run.error
    candidates = list(run.candidates.order_by("index"))
    assert [(c.index, c.seed) for c in candidates] == [(i, run.base_seed + i) for i in range(run.count)]
    names = [str(c.image.name) for c in candidates]
    for candidate, name in zip(candidates, names, strict=True):
        assert candidate.image.storage.exists(name), name
    assert [path.name for path in run_files(run)] == sorted(Path(name).name for name in names)


def test_two_clusters_make_twenty_runs_each_claimed_by_one_worker_exactly_once(start_worker, article) -> None:
    first, second = start_two_clusters(start_worker)

    runs = [
        run_submit(article=article, model="tiny-sd", seed=100 * i, count=1 + i % 2, width=64, height=64, steps=2)
        for i in range(20)
    ]
    for run in runs:
        wait_finished(run, timeout=180, worker=first)

    logs = first.output() + second.output()
    made_by: set[Worker | None] = set()
    for run in runs:
        assert_made_exactly_once(run)
        assert run.attempts == 1, f"run {run.pk} was claimed {run.attempts} times"
        assert claims_in(logs, run) == ["1"], f"run {run.pk} claim lines: {claims_in(logs, run)}"
        made_by.add(cluster_of(int(run.worker.rsplit(":", 1)[1]), first, second))
    assert made_by == {first, second}, "both clusters should have taken runs from the shared queue"
    # No task was handed to two clusters: every task claimed a run (a task may lose the race for
    # a run it picked in claim order, and picks again: "taken by another worker first").
    assert "not claimed" not in logs


def test_a_cluster_killed_mid_run_leaves_its_run_to_the_other_exactly_once(start_worker, article) -> None:
    first, second = start_two_clusters(start_worker)
    run = run_submit(article=article, model="tiny-sd", seed=4321, count=2, width=128, height=128, steps=60)

    def midway() -> bool:
        run.refresh_from_db()
        return run.status == Status.RUNNING and run.progress_step >= 3

    wait_for(midway, 90, "the run to be midway", first)
    worker_pid = int(run.worker.rsplit(":", 1)[1])
    holder = cluster_of(worker_pid, first, second)
    assert holder is not None
    survivor = second if holder is first else first
    holder.kill_hard()  # kill -9 of that cluster's whole process group
    run.refresh_from_db()
    assert run.status == Status.RUNNING and run.attempts == 1
    # kill_hard waits for the cluster's main process; its worker child may take a moment more
    # to be torn down, and until then its pid still counts as alive (so a sweep in that moment
    # rightly leaves the run, for the next sweep).
    wait_for(lambda: not _process_alive(worker_pid), 30, "the killed worker process to be gone")

    # The next task the surviving cluster takes starts with the orphan sweep: the dead worker's
    # run is queued again and made there, with no restart and no hand repair.
    nudge = run_submit(article=article, model="tiny-sd", seed=7, count=1, width=64, height=64, steps=1)
    wait_finished(nudge, timeout=90, worker=survivor)
    wait_finished(run, timeout=120, worker=survivor)

    assert run.attempts == 2
    assert_made_exactly_once(run)
    assert cluster_of(int(run.worker.rsplit(":", 1)[1]), first, second) is survivor
    assert claims_in(survivor.output(), run) == ["2"]
    assert_made_exactly_once(nudge)


@pytest.mark.skipif(
    not can_make_uts_namespace(), reason="needs `unshare --uts` (root) to run a cluster as another host"
)
def test_two_boxes_on_one_bucket_a_box_killed_while_saving_its_run_is_made_once_by_the_other(
    start_worker, start_slow_saver, candidates_env, candidates_on_s3, s3_server, s3_bucket, article
) -> None:
    """Two GPU boxes as an operator runs them: box B is another host (a UTS namespace of its
    own, so only its heartbeat speaks for it), both share PostgreSQL and keep candidates in one
    S3 bucket. B is killed with ``kill -9`` after saving its first image to the bucket; box A
    takes the run once B's heartbeat is stale, makes it once, and deletes B's image: the bucket
    holds exactly what the rows point at."""
    box_b, marker = start_slow_saver(pause=60, hostname="gpu-box-b", **candidates_env, **ONE_THREAD)
    run = run_submit(article=article, model="tiny-sd", seed=600, count=2, width=64, height=64, steps=2)
    wait_for(marker.exists, 90, "box B to save its first image to the bucket", box_b)
    run.refresh_from_db()
    assert run.status == Status.RUNNING and run.worker.startswith("gpu-box-b:")
    first_image = marker.read_text().split()
    assert first_image == [f"runs/{run.pk:06d}/a1-00-seed600.png"]
    assert set(s3_server.objects(s3_bucket, with_bodies=False)) == set(first_image)
    box_b.kill_hard()
    silent = GenerationRun.objects.filter(GenerationRun.stale_heartbeat(3), pk=run.pk)
    wait_for(silent.exists, 30, "box B's heartbeat to be 3 s old")

    box_a = start_worker(HOFFDESK_STALE_AFTER="3", **candidates_env, **ONE_THREAD)
    # Its start-up sweep, or the sweep before the next task, finds B silent and queues the run.
    # (The light cluster's every-minute sweep would too; test_stuck_runs.py shows that one.)
    nudge = run_submit(article=article, model="tiny-sd", seed=7, count=1, width=64, height=64, steps=1)
    wait_finished(nudge, timeout=120, worker=box_a)
    wait_finished(run, timeout=120, worker=box_a)

    assert run.status == Status.SUCCEEDED, run.error
    assert run.attempts == 2 and not run.worker.startswith("gpu-box-b:")
    assert claims_in(box_a.output(), run) == ["2"]
    assert "gpu-box-b:" in box_a.output() and "silent heartbeat" in box_a.output()
    rows = {str(c.image.name) for c in Candidate.objects.filter(run__in=[run, nudge])}
    assert sorted(Path(name).name for name in rows if f"/{run.pk:06d}/" in name) == [
        "a2-00-seed600.png",
        "a2-01-seed601.png",
    ]
    pngs = {key for key in s3_server.objects(s3_bucket, with_bodies=False) if key.startswith("runs/")}
    assert pngs == rows, "the bucket should hold exactly the images the rows point at"
