"""Recovery: runs whose worker died, and queued runs whose task was lost.

Called when a worker starts, at the start of every task, and by the periodic sweep on the light
cluster (``generation.tasks.runs_sweep``). Every write re-checks its condition in its UPDATE, so
a worker that is alive after all keeps its run. This module uses ``generation.services`` (queueing,
deleting files) and is never imported by it: one direction.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import BooleanField, Case, Q, Value, When
from django.utils import timezone

from generation.models import GenerationRun
from generation.services import gpu_queue_name, run_discard_files, run_enqueue, run_task_name

logger = logging.getLogger(__name__)


# A run queued this recently may be between its commit and its on_commit enqueue.
LOST_AFTER = timedelta(seconds=60)


def runs_requeue_lost() -> list[int]:
    """Runs ``queued`` with no task in the GPU queue: enqueue them again.

    A run is lost when the process died between the commit and the on_commit enqueue, or when
    its task was acknowledged without claiming it. Only runs queued longer than ``LOST_AFTER``
    count, so a run between its commit and its enqueue is left alone. A duplicate task is
    harmless: the claim is a conditional UPDATE, so the second finds the run not queued.
    """
    from django_q.models import OrmQ

    waiting = GenerationRun.objects.filter(
        status=GenerationRun.Status.QUEUED, cancel_requested=False, queued_at__lt=timezone.now() - LOST_AFTER
    ).values_list("pk", flat=True)
    candidates = list(waiting)
    if not candidates:
        return []
    # The payloads are signed pickles; OrmQ.name() decodes one and answers None when it cannot.
    in_broker = {entry.name() for entry in OrmQ.objects.filter(key=gpu_queue_name())}
    requeued = []
    for run_id in candidates:
        if run_task_name(run_id) in in_broker:
            continue
        run = GenerationRun.objects.filter(pk=run_id, status=GenerationRun.Status.QUEUED).first()
        if run is None:
            continue
        logger.warning("run %s: queued with no task in the broker; enqueued again", run_id)
        with transaction.atomic():
            run_enqueue(run=run)
        requeued.append(run_id)
    return requeued


# A process that started this long after the run's claim cannot be the worker that claimed it.
PID_REUSE_SLACK = timedelta(seconds=60)


def _worker_is_gone(run: GenerationRun, host: str, heartbeat_stale: bool) -> str | None:
    """Why the run's worker counts as gone: ``"dead"`` (its process on this host has ended, is
    a zombie, or its pid now belongs to a process started after the claim), ``"stale"`` (a worker
    elsewhere whose heartbeat is older than ``HOFFDESK_STALE_AFTER``), or None: alive.

    On this host the pid decides, whatever the heartbeat: a live worker may miss beats (a busy
    database, a long model load) and must keep its run. The heartbeat decides only for workers
    on other hosts, for this process's own pid, and for a worker field that names no pid.
    """
    worker_host, _, pid_text = run.worker.rpartition(":")
    if worker_host == host and pid_text.isdigit() and int(pid_text) != os.getpid():
        pid = int(pid_text)
        if not _process_alive(pid):
            return "dead"
        started = _process_started_at(pid)
        if started is not None and run.started_at is not None and started > run.started_at + PID_REUSE_SLACK:
            return "dead"
        return None
    return "stale" if heartbeat_stale else None


def _process_alive(pid: int) -> bool:
    """True when ``pid`` runs on this host; a zombie (killed, not yet reaped) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            state = fh.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _process_started_at(pid: int) -> datetime | None:
    """When ``pid`` started, by this host's clock (Linux ``/proc``); None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            # Field 22, starttime in clock ticks after boot; fields counted after the ")" of comm.
            ticks = int(fh.read().rpartition(")")[2].split()[19])
        with open("/proc/stat", encoding="ascii") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith("btime "))
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return datetime.fromtimestamp(boot + ticks / hz, tz=UTC)


def _finish_orphan(run: GenerationRun, still_orphaned: Q, error: str) -> bool:
    """At the attempt limit or asked to cancel: cancelled or failed, only while still orphaned."""
    base = GenerationRun.objects.filter(still_orphaned, pk=run.pk)
    now = timezone.now()
    if base.filter(cancel_requested=True).update(status=GenerationRun.Status.CANCELLED, finished_at=now):
        run.refresh_from_db()
        return True
    if base.filter(cancel_requested=False).update(status=GenerationRun.Status.FAILED, finished_at=now, error=error):
        run.refresh_from_db()
        return True
    return False


def timed_out_message() -> str:
    """Why a run that ran past the task timeout failed, naming the limit (and not tried again)."""
    return (
        f"This run took longer than the worker's task timeout of {settings.HOFFDESK_TASK_TIMEOUT} s "
        "(HOFFDESK_TASK_TIMEOUT) and was stopped; it is not tried again, since it would be stopped again. "
        "Ask for fewer steps, fewer candidates or a smaller size."
    )


def run_requeue_after_engine_lost(*, run: GenerationRun, reason: str) -> str:
    """The ComfyUI server went away under this attempt (refused, dropped, restarted): the same
    rule as a worker that died. Queued again while attempts remain, cancelled if an editor asked
    for it, else failed with the reason. ``run`` carries this attempt's number; returns the
    run's status."""
    limit = settings.HOFFDESK_RUN_MAX_ATTEMPTS
    with transaction.atomic():
        if run.requeue_orphaned(limit):
            logger.warning(
                "run %s: ComfyUI went away (%s); queued again (attempt %s of %s)", run.pk, reason, run.attempts, limit
            )
            run_enqueue(run=run)
            return str(GenerationRun.Status.QUEUED)
    if run.mark_cancelled():
        run_discard_files(run=run)
        return str(GenerationRun.Status.CANCELLED)
    error = (
        f"The ComfyUI server went away while making this run ({reason}), {run.attempts} time(s); the limit is "
        f"{limit} attempt(s), so it was not tried again. Check that the ComfyUI server runs, then make the run again."
    )
    if run.fail(error):
        run_discard_files(run=run)
        return str(GenerationRun.Status.FAILED)
    run.refresh_from_db()
    return str(run.status)


def _comfyui_let_go(run: GenerationRun) -> None:
    """A ComfyUI run taken from a dead worker: stop the prompts it left on the server (best
    effort), so none runs there that no attempt follows."""
    if run.comfy_prompts:
        from generation.comfyui_engine import comfyui_let_go

        comfyui_let_go([str(p["prompt_id"]) for p in run.comfy_prompts])


def runs_recover_orphaned() -> list[int]:
    """Runs left ``running`` by a dead worker: queue them again, or fail them past the limit.

    Called when a worker starts and at the start of every task. A worker on this host counts as
    dead when its process is gone; one elsewhere when its heartbeat is older than
    ``HOFFDESK_STALE_AFTER`` seconds by the database's clock, so no two machines' clocks are
    compared. Every write re-checks that in its UPDATE, so a worker that beat after the read keeps
    its run. A run past its worker's task timeout (``deadline_at``) is failed with that reason,
    never queued again.
    """
    host = socket.gethostname()
    stale_after = settings.HOFFDESK_STALE_AFTER
    limit = settings.HOFFDESK_RUN_MAX_ATTEMPTS
    recovered = []
    running = GenerationRun.objects.filter(status=GenerationRun.Status.RUNNING).annotate(
        heartbeat_is_stale=Case(
            When(GenerationRun.stale_heartbeat(stale_after), then=Value(True)),
            default=Value(False),
            output_field=BooleanField(),
        ),
        is_past_deadline=Case(
            When(GenerationRun.past_deadline(), then=Value(True)), default=Value(False), output_field=BooleanField()
        ),
    )
    for run in running:
        why = _worker_is_gone(run, host, bool(getattr(run, "heartbeat_is_stale", False)))
        if why is None:
            continue
        guard = stale_after if why == "stale" else None
        if getattr(run, "is_past_deadline", False):
            # Its worker's task timeout ran out: django-q2 killed it, or would have. Another
            # attempt would be killed the same way, so it ends here with that reason.
            still_orphaned = run.live_attempt() & GenerationRun.past_deadline()
            if guard is not None:
                still_orphaned &= GenerationRun.stale_heartbeat(guard)
            if _finish_orphan(run, still_orphaned, timed_out_message()):
                run_discard_files(run=run)
                recovered.append(run.pk)
            continue
        gone_worker = run.worker  # the requeue clears it
        requeued = False
        with transaction.atomic():
            if run.requeue_orphaned(limit, stale_after=guard):
                logger.warning(
                    "run %s: worker %s is gone (%s); queued again (attempt %s of %s)",
                    run.pk,
                    gone_worker,
                    "silent heartbeat" if guard is not None else "process ended",
                    run.attempts,
                    limit,
                )
                run_enqueue(run=run)
                recovered.append(run.pk)
                requeued = True
        if requeued:
            _comfyui_let_go(run)  # after the commit: no network call inside the transaction
            continue
        still_orphaned = run.live_attempt()
        if guard is not None:
            still_orphaned &= GenerationRun.stale_heartbeat(guard)
        error = (
            f"The worker stopped while making this run {run.attempts} time(s) (a crash, a kill by the "
            f"system for lack of memory, or the {settings.HOFFDESK_TASK_TIMEOUT} s task timeout); "
            f"the limit is {limit} attempts, so it was not tried again. Try fewer candidates or a "
            "smaller size, and check the worker's log."
        )
        if _finish_orphan(run, still_orphaned, error):
            run_discard_files(run=run)
            recovered.append(run.pk)
            _comfyui_let_go(run)
    return recovered
