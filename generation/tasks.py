"""Worker tasks. They take ids, re-fetch, and return quietly when there is nothing to do.

The engine (torch, diffusers) is imported here lazily, inside the task, so only the worker
process ever loads it.
"""

from __future__ import annotations

import errno
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connection, transaction
from django_q.exceptions import TimeoutException

from generation.demo import WeightsMissing, worker_engine_profile
from generation.energy import counter_now, energy_between
from generation.models import Candidate, GenerationRun, candidate_file_name, candidate_storage
from generation.policies import run_apply_review_policy
from generation.profiles import UnknownProfile, get_profile
from generation.recovery import (
    run_requeue_after_engine_lost,
    runs_recover_orphaned,
    runs_requeue_lost,
    timed_out_message,
)
from generation.results import GeneratedImage, GenerationResult
from generation.services import run_cancel_and_discard, run_discard_files
from generation.thumbnails import thumbnails_ensure_batch
from generation.validation import engine_limits_problem

if TYPE_CHECKING:
    from generation.engine.loader import PipelineCache

logger = logging.getLogger(__name__)

_cache: PipelineCache | None = None


def engine_cache() -> PipelineCache:
    """The worker process's warm pipelines (made on first use; the preload thread at worker
    start and the first task may ask at once, hence the lock), placed by the memory plan, and
    telling the heartbeat what is loading (``generation.health.worker_models``)."""
    global _cache
    with _cache_lock:
        if _cache is None:
            import torch

            from generation.engine.loader import PipelineCache
            from generation.health import worker_models

            if settings.HOFFDESK_TORCH_THREADS:
                torch.set_num_threads(settings.HOFFDESK_TORCH_THREADS)
            _cache = PipelineCache(
                settings.HOFFDESK_MODELS_DIR,
                vram_gib=settings.HOFFDESK_VRAM_GIB or None,
                headroom_gib=settings.HOFFDESK_VRAM_HEADROOM_GIB,
                listener=worker_models,
                load_delay=settings.HOFFDESK_TEST_LOAD_DELAY,
                ram_cache_gib=settings.HOFFDESK_RAM_CACHE_GIB,
                fp8_storage=settings.HOFFDESK_FP8_STORAGE,
            )
        return _cache


_cache_lock = threading.Lock()
# A bound, not a budget: each lost claim passes over one run another worker took (or that
# cannot be claimed), so a task gives up only after passing over this many.
CLAIM_TRIES = 1000


def _run_to_take(run_id: int, passed: set[int]) -> int | None:
    """The run this task claims: the first in ``GenerationRun.claim_order`` for the model this
    process holds (loaded model first within ``HOFFDESK_SWITCH_WAIT``), which may be another
    queued run than the task's own; that one's task then takes the next. One task still runs one
    run, and a queued run always has a task (its own, or one it lent). Runs in ``passed`` (lost
    to another worker, or not claimable) are left out; its own run when nothing else is queued
    (the claim then says why not); None when even that was passed. The light cluster's cloud
    runs keep their own order: never reordered, and never a GPU run taken by a cloud run's task
    or the other way round."""
    from django_q.conf import Conf

    own = None if run_id in passed else run_id
    if str(Conf.CLUSTER_NAME) != str(settings.Q_CLUSTER["name"]):
        return own
    if GenerationRun.objects.filter(pk=run_id, cloud_cost__isnull=False).exists():
        return own
    loaded = _cache.current if _cache is not None else None
    best = GenerationRun.claim_order(loaded=loaded, switch_wait=settings.HOFFDESK_SWITCH_WAIT, limit=1, exclude=passed)
    if best and best[0] != run_id:
        logger.info("task of run %s takes run %s first (loaded model: %s)", run_id, best[0], loaded or "none")
        return best[0]
    return own


class _Heartbeat(threading.Thread):
    """Keeps the run's heartbeat fresh during long silent phases (loading a model).

    It stops when told to, or when the run is no longer this attempt's. A failed beat (SQLite
    busy, a PostgreSQL server that restarted) is logged, the connection closed so that the next
    beat reconnects, and the beating goes on: a thread that ended here would leave a live run
    silent, and a sweeper elsewhere would take it away.
    """

    def __init__(self, run: GenerationRun) -> None:
        super().__init__(daemon=True, name=f"heartbeat-run-{run.pk}")
        self.run_row = GenerationRun.objects.get(pk=run.pk)
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(settings.HOFFDESK_HEARTBEAT_INTERVAL):
                try:
                    if not self.run_row.heartbeat():
                        return
                except DatabaseError:
                    logger.warning("run %s: heartbeat failed; trying again", self.run_row.pk, exc_info=True)
                    _drop_connection()
                except Exception:
                    logger.exception("run %s: heartbeat failed unexpectedly; trying again", self.run_row.pk)
                    _drop_connection()
        finally:
            connection.close()


def _progress_reporter(run: GenerationRun) -> Any:
    """The pipeline's per-step callback: writes progress at most every
    ``HOFFDESK_PROGRESS_INTERVAL`` seconds and stops the pipeline (``Cancelled``) when that write
    finds the attempt no longer wanted (cancelled, or taken over by another attempt).

    The cancel flag is read only with that throttled write, never on every step: a query per
    step cost the pipeline time for nothing (bench/engine_overhead.py), and a cancel still
    stops the run within one interval and one step. A database error (a PostgreSQL restart,
    SQLite busy) skips this write rather than failing a run that is otherwise fine; the
    heartbeat thread keeps the run alive meanwhile, and the next write reconnects.
    """
    from generation.engine.generate import Cancelled

    last_write = 0.0

    def on_step(step: int, total: int) -> None:
        nonlocal last_write
        now = time.monotonic()
        if step < total and now - last_write < settings.HOFFDESK_PROGRESS_INTERVAL:
            return
        last_write = now
        try:
            wanted = run.record_progress(step, total)
        except DatabaseError:
            logger.warning("run %s: writing progress failed; going on", run.pk, exc_info=True)
            _drop_connection()
            return
        if not wanted:
            raise Cancelled

    from generation.previews import PreviewingProgress

    # The same callback, taking the engine's live previews too (every HOFFDESK_PREVIEW_EVERY steps).
    return PreviewingProgress(run_id=run.pk, on_step=on_step)


def _drop_connection() -> None:
    """Close this thread's database connection after an error; the next query opens a new one."""
    try:
        connection.close()
    except DatabaseError:
        logger.debug("closing a broken database connection failed", exc_info=True)


def run_generate(run_id: int) -> str:
    """Claim run ``run_id``, make its candidates and record the outcome.

    Once claimed, the run always ends in a clear state: any error (a broken profile, a full
    disk while saving, a bug) fails it with the reason, so no run stays ``running`` with a live
    worker pid and no heartbeat, which no sweep would ever take away.
    """
    close_old_connections()
    try:
        runs_record_unrecorded_failures()
    except Exception:
        logger.exception("run %s: recording earlier failures before the claim failed; claiming anyway", run_id)
        close_old_connections()
    # Each task also sweeps for runs orphaned by workers elsewhere (silent heartbeat), so a dead
    # GPU box's run is taken up by any busy worker, not only by one that restarts. A failing
    # sweep must not stop the claim: the task would be acknowledged and its run left queued.
    try:
        runs_recover_orphaned()
    except Exception:
        logger.exception("run %s: the orphan sweep before the claim failed; claiming anyway", run_id)
        close_old_connections()
    # A lost race means another worker took the run picked (or it cannot be claimed: cancel asked,
    # attempts used up); pick again without it. Two GPU clusters in step pick the same runs, so
    # a task may lose several times; it stops only when its own run cannot be claimed, so every
    # task takes a run while any is queued and no queued run is left without a task.
    passed: set[int] = set()
    for _ in range(CLAIM_TRIES):
        chosen = _run_to_take(run_id, passed)
        if chosen is None:  # its own run went to another task, and nothing else is queued
            status = GenerationRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
            logger.info("run %s not claimed: it is %s", run_id, status or "gone")
            return f"not claimed: {status}" if status else "gone"
        run = GenerationRun.objects.filter(pk=chosen).first()
        if run is not None:
            engine_profile, engine_note, refusal = _engine_choice(run)
            if run.claim(
                settings.HOFFDESK_RUN_MAX_ATTEMPTS,
                engine_profile=engine_profile,
                engine_note=engine_note,
                timeout=settings.HOFFDESK_TASK_TIMEOUT,
            ):
                break
        passed.add(chosen)
        if chosen != run_id:
            logger.info("run %s was taken by another worker first; task of run %s picks again", chosen, run_id)
    else:
        logger.warning("task of run %s not claimed: another worker took each run it picked first", run_id)
        return "not claimed: another worker took each run first"
    attempt = run.attempts
    if refusal:
        logger.warning("run %s failed: %s", run.pk, refusal)
        run.fail(refusal)
        return "failed"
    heartbeat: _Heartbeat | None = None
    try:
        logger.info(
            "run %s: %s x %sx%s with %s, %s steps, seeds %s..%s (attempt %s)",
            run.pk,
            run.count,
            run.width,
            run.height,
            run.model_profile,
            run.steps,
            run.base_seed,
            run.seeds[-1],
            run.attempts,
        )
        heartbeat = _Heartbeat(run)
        heartbeat.start()
        energy_before = counter_now(settings.HOFFDESK_ENERGY_READER)
        outcome = _execute(run)
        if outcome == "succeeded":
            _record_energy(run, attempt=attempt, before=energy_before)
        return outcome
    except Exception as exc:
        return _fail_after_error(run, exc, attempt=attempt)
    except TimeoutException:
        # django-q2's SIGALRM at HOFFDESK_TASK_TIMEOUT (a SystemExit, so no ``except Exception``
        # above sees it): fail the run with that reason before django-q2 ends this process, so
        # the sweep never takes the run for a crash and runs it again to be killed again.
        _fail_timed_out(run, attempt=attempt)
        raise
    finally:
        if heartbeat is not None:
            heartbeat.stopped.set()
            heartbeat.join()
        _discard_previews(run)


def _discard_previews(run: GenerationRun) -> None:
    """The attempt ended, whatever its end: its live previews go (previews are not kept). A
    database error leaves them to the periodic sweep; it never changes the run's outcome."""
    from generation.previews import previews_delete

    try:
        previews_delete(run_id=run.pk)
    except DatabaseError:
        logger.warning("run %s: deleting its previews failed; the sweep deletes them", run.pk, exc_info=True)
        _drop_connection()


def _engine_choice(run: GenerationRun) -> tuple[str, str, str]:
    """What this worker runs for ``run``, decided from its own models folder (the web only
    guessed): (engine profile, note for the editor when a stand-in runs, refusal or "").
    A ComfyUI run needs no weights here: its profile only set the limits."""
    if run.runs_on_comfyui or run.runs_in_cloud:
        return run.model_profile, "", ""
    try:
        profile = get_profile(run.model_profile)
        engine = worker_engine_profile(profile)
    except (UnknownProfile, WeightsMissing) as exc:
        return "", "", str(exc.args[0] if isinstance(exc, UnknownProfile) else exc)
    except Exception as exc:  # the run is claimed and failed with it: never left queued by a bug
        logger.exception("run %s: deciding what to run failed", run.pk)
        return "", "", _failure_message(exc)
    if engine == profile.name:
        return engine, "", ""
    note = f"The GPU worker that took this run has no {profile.name} weights: it ran the stand-in {engine}."
    problem = engine_limits_problem(
        profile=profile, engine=get_profile(engine), width=run.width, height=run.height, steps=run.steps
    )
    return engine, note, problem


def _fail_timed_out(run: GenerationRun, *, attempt: int) -> None:
    """Fail this attempt with the task timeout as its reason and delete what it wrote; quick, as
    django-q2 ends the process a few seconds after its alarm."""
    run.attempts = attempt
    logger.error("run %s: stopped by the %s s task timeout", run.pk, settings.HOFFDESK_TASK_TIMEOUT)
    try:
        _discard_own_files(run)
        if run.fail(timed_out_message()):
            run_discard_files(run=run)
    except Exception:
        # The deadline recorded at the claim lets the sweep fail it instead, with the same reason.
        logger.exception("run %s: recording the timeout failed; the sweep records it", run.pk)


def runs_sweep() -> dict[str, list[int]]:
    """The periodic sweep (the ``hoffdesk-sweep`` schedule, run by the light cluster every
    minute): recover runs orphaned by a dead worker, and queue again the runs that are ``queued``
    with no task in the broker. It works even when no new run arrives to trigger the sweep at a
    task's start. Each half runs even if the other fails."""
    close_old_connections()
    done: dict[str, list[int]] = {"recovered": [], "requeued": []}
    try:
        done["recovered"] = runs_recover_orphaned()
    except Exception:
        logger.exception("periodic sweep: recovering orphaned runs failed")
        close_old_connections()
    try:
        done["requeued"] = runs_requeue_lost()
    except Exception:
        logger.exception("periodic sweep: queueing lost runs again failed")
    try:
        from generation.previews import previews_delete_finished

        previews_delete_finished()  # what a worker that died mid-run left
    except Exception:
        logger.exception("periodic sweep: deleting the previews of finished runs failed")
    try:
        from generation.cloud import cloud_fallback_sweep

        done.update(cloud_fallback_sweep())  # presets with cloud fallback: no GPU worker, or failed twice
    except Exception:
        logger.exception("periodic sweep: the cloud fallback failed")
    if done["recovered"] or done["requeued"]:
        logger.warning("periodic sweep: recovered %s, queued again %s", done["recovered"], done["requeued"])
    return done


class CouldNotSave(Exception):
    """Writing a candidate's image or thumbnail failed (a full disk, a read-only folder, a bucket
    that refuses the upload); the message says so in an editor's words."""


def _failure_message(exc: BaseException) -> str:
    if isinstance(exc, CouldNotSave):
        return str(exc)
    return f"Unexpected error in the worker: {type(exc).__name__}: {exc}"


def _fail_after_error(run: GenerationRun, exc: Exception, *, attempt: int, tries: int = 3) -> str:
    """Fail this attempt of ``run`` after ``exc`` and delete the files no row points at.

    The database may be what broke, so the write is tried again on a fresh connection: a run left
    ``running`` by a worker whose process lives on is never taken away by the orphan sweep.
    """
    message = _failure_message(exc)
    logger.error("run %s failed: %s", run.pk, message, exc_info=exc)
    # The instance may have been refreshed since the claim (a lost run shows the attempt that
    # took over): every write below is about this attempt, ``attempt``, and only it.
    run.attempts = attempt
    _discard_own_files(run)
    for attempt in range(1, tries + 1):
        try:
            failed = run.fail(message)
            if not failed:
                run.refresh_from_db()
            break
        except Exception:
            logger.exception("run %s: recording the failure failed (try %s of %s)", run.pk, attempt, tries)
            _drop_connection()
            time.sleep(min(2.0 * attempt, 5.0))
    else:
        unrecorded_failures.add(run, message)
        logger.critical(
            "run %s could not be marked failed: the database does not answer; this worker records it when it does",
            run.pk,
        )
        return "failed"
    if not failed:
        logger.info("run %s: not failed after the error, it is %s (attempt %s)", run.pk, run.status, run.attempts)
        return run.status
    try:
        run_discard_files(run=run)
    except Exception:
        logger.exception("run %s: deleting this attempt's files failed", run.pk)
    return "failed"


class UnrecordedFailures:
    """Failures this process could not write (the database was away for longer than the tries in
    ``_fail_after_error``); this object alone holds them, behind its lock.

    The run stays ``running`` under this live process, which no sweep on this host takes from it,
    so the process itself writes them later: the next task before its claim, and the WorkerBeat
    thread in ``generation.health`` on every beat, both by asking ``record``. A run taken over
    meanwhile is left to its new attempt.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[int, tuple[GenerationRun, str]] = {}

    def add(self, run: GenerationRun, message: str) -> None:
        with self._lock:
            self._runs[run.pk] = (run, message)

    def __len__(self) -> int:
        with self._lock:
            return len(self._runs)

    def record(self) -> list[int]:
        """Mark failed the runs held here, once the database answers; returns their ids."""
        with self._lock:
            pending = list(self._runs.values())
        recorded = []
        for run, message in pending:
            try:
                failed = run.fail(message)
            except DatabaseError:
                logger.warning("run %s: recording its failure failed again; trying on the next beat", run.pk)
                _drop_connection()
                continue
            with self._lock:
                self._runs.pop(run.pk, None)
            if not failed:
                logger.info("run %s: its failure was not recorded, another attempt holds it now", run.pk)
                continue
            logger.warning("run %s: failure recorded now that the database answers: %s", run.pk, message)
            recorded.append(run.pk)
            try:
                run_discard_files(run=run)
            except Exception:
                logger.exception("run %s: deleting this attempt's files failed", run.pk)
        return recorded


unrecorded_failures = UnrecordedFailures()


def runs_record_unrecorded_failures() -> list[int]:
    """Mark failed the runs whose failure this process could not write before; returns their ids."""
    return unrecorded_failures.record()


def _discard_own_files(run: GenerationRun) -> None:
    """Before this attempt records its failure: delete what it wrote (a half-written file
    included), so that a run that shows failed has no stray files. Only its own names, which
    no other attempt writes and no row points at; if the database cannot say which rows exist,
    this waits for the clean-up after the failure is written."""
    try:
        run_discard_files(run=run, attempts=[run.attempts])
    except Exception:
        logger.warning("run %s: deleting this attempt's files before failing it failed", run.pk, exc_info=True)


def _execute_on_comfyui(run: GenerationRun) -> str:
    """The run's candidates made on the ComfyUI server (``generation.comfyui_engine``), recorded
    like the diffusers worker's. No torch on this path. A server that went away is treated like
    a worker that died: queued again while attempts remain, else failed with the reason."""
    from generation.comfyui import Cancelled, ComfyUIError, ConnectionLost
    from generation.comfyui_engine import comfyui_generate

    attempt = run.attempts
    try:
        result = comfyui_generate(run, _png_with_recipe)
    except Cancelled:
        logger.info("run %s stopped on ComfyUI at step %s", run.pk, run.progress_step)
        run_cancel_and_discard(run=run, worker_stopped=True)
        run.refresh_from_db()
        return run.status
    except ConnectionLost as exc:
        logger.warning("run %s: the ComfyUI server went away: %s", run.pk, exc)
        run.attempts = attempt
        _discard_own_files(run)
        return run_requeue_after_engine_lost(run=run, reason=str(exc))
    except ComfyUIError as exc:  # a rejected graph, a node that failed, an interrupt in ComfyUI
        logger.warning("run %s failed on ComfyUI: %s", run.pk, exc)
        run.attempts = attempt
        _discard_own_files(run)
        if run.fail(f"ComfyUI: {exc}"):
            run_discard_files(run=run)
        return "failed"
    except Exception as exc:
        return _fail_after_error(run, exc, attempt=attempt)
    return _record_candidates(run, result)


def _png_with_recipe(png: bytes, recipe: dict[str, Any]) -> tuple[bytes, int, int]:
    """A PNG ComfyUI saved, with our ``parameters`` and ``hoffdesk`` chunks added and its own
    (``prompt``, ``workflow``) kept, so it still opens in ComfyUI; and its size. Pillow only."""
    import io

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from generation.engine.metadata import PARAMETERS_CHUNK, PNG_COMPRESS_LEVEL, RECIPE_CHUNK, a1111_parameters

    info = PngInfo()
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        for key, value in image.info.items():
            if isinstance(value, str) and key not in (PARAMETERS_CHUNK, RECIPE_CHUNK):
                info.add_text(str(key), value)
        info.add_text(PARAMETERS_CHUNK, a1111_parameters(recipe))
        info.add_text(RECIPE_CHUNK, json.dumps(recipe, sort_keys=True))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
        return buffer.getvalue(), image.width, image.height


def _execute_in_cloud(run: GenerationRun) -> str:
    """The run's candidates from the cloud engine (``generation.cloud``), recorded like any
    other; what the cloud did not make goes back to the month's budget. No torch on this path."""
    from generation.cloud import CloudCancelled, CloudError, cloud_generate, cloud_give_back

    attempt = run.attempts
    try:
        result = cloud_generate(run, run.record_progress)
    except CloudCancelled as stopped:
        run_cancel_and_discard(run=run, worker_stopped=True)
        cloud_give_back(run=run, made=stopped.made)  # the images made were paid for, kept or not
        run.refresh_from_db()
        return run.status
    except CloudError as exc:
        logger.warning("run %s failed in the cloud: %s", run.pk, exc)
        run.attempts = attempt
        if run.fail(f"Cloud: {exc}"):
            run_discard_files(run=run)
            cloud_give_back(run=run, made=exc.made)
        return "failed"
    except Exception as exc:
        return _fail_after_error(run, exc, attempt=attempt)
    return _record_candidates(run, result)


def _execute(run: GenerationRun) -> str:
    if run.runs_on_comfyui:
        return _execute_on_comfyui(run)
    if run.runs_in_cloud:
        return _execute_in_cloud(run)
    from generation.engine.generate import Cancelled, Recipe, generate
    from generation.engine.loader import EngineError

    attempt = run.attempts  # the claim's; the instance may be refreshed below
    profile = get_profile(run.profile_to_run)
    recipe = Recipe(
        stand_in_for=run.model_profile if run.is_stand_in else None,
        profile=profile.name,
        prompt=run.prompt,
        negative_prompt=run.negative_prompt,
        width=run.width,
        height=run.height,
        steps=run.steps,
        guidance=run.guidance,
        seeds=tuple(run.seeds),
        subseeds=tuple(run.variation_seeds) if run.variation_seeds else None,
        subseed_strength=run.variation_strength,
        **_hires_fields(run),
        draft=run.draft,
        draft_cache=run.draft_cache or None,
    )
    _reset_peak_memory()
    try:
        sources = _enlargement_sources(run)
        result = generate(
            engine_cache(),
            profile,
            recipe,
            _progress_reporter(run),
            source_images=sources,
            # The asked-for profile's file: a demo stand-in's PNG opens in ComfyUI on the real model.
            comfyui_checkpoint=settings.HOFFDESK_COMFYUI_CHECKPOINTS.get(run.model_profile, ""),
        )
    except Cancelled:
        logger.info("run %s stopped at step %s", run.pk, run.progress_step)
        # Before any refresh: the instance's attempt is this worker's, and only it may end.
        run_cancel_and_discard(run=run, worker_stopped=True)
        run.refresh_from_db()
        return run.status
    except EngineError as exc:
        logger.warning("run %s failed: %s", run.pk, exc)
        _discard_own_files(run)
        if run.fail(str(exc)):
            run_discard_files(run=run)
        return "failed"
    except Exception as exc:
        return _fail_after_error(run, exc, attempt=attempt)
    finally:
        _record_memory_plan(run, profile.name, attempt=attempt)
    return _record_candidates(run, result)


def _reset_peak_memory() -> None:
    from generation.engine.loader import reset_peak_memory

    reset_peak_memory()


def _record_memory_plan(run: GenerationRun, profile: str, *, attempt: int) -> None:
    """The memory plan this attempt ran under, in the run card's one line, and the peak GPU memory
    it reserved (None on a CPU), also for a run that failed (out of memory is when it matters)."""
    from generation.engine.loader import peak_reserved_bytes

    label = engine_cache().plan_label(profile)
    try:
        GenerationRun.objects.filter(pk=run.pk, attempts=attempt).update(
            memory_plan=label, peak_vram_bytes=peak_reserved_bytes()
        )
    except DatabaseError:
        logger.warning("run %s: recording its memory plan failed", run.pk, exc_info=True)
        _drop_connection()
        return
    run.memory_plan = label


def _hires_fields(run: GenerationRun) -> dict[str, Any]:
    """The run's hires pass as the engine's ``Recipe`` takes it (nothing when it has none)."""
    if run.hires_scale is None:
        return {}
    return {
        "hires_scale": run.hires_scale,
        "hires_upscaler": run.hires_upscaler or "lanczos",
        "hires_steps": run.hires_steps or 1,
        "hires_denoise": run.hires_denoise or 0.5,
    }


def _enlargement_sources(run: GenerationRun) -> list[bytes] | None:
    """ "Make hero size": the source candidate's PNG, which the hires pass enlarges (else None)."""
    from generation.engine.loader import EngineError

    if not run.is_enlargement:
        return None
    candidate = run.source_candidate
    if candidate is None:
        raise EngineError("The candidate to enlarge was deleted: nothing to make hero size.")
    with candidate.image.open("rb") as fh:
        return [fh.read()] * len(run.seeds)


def _record_candidates(run: GenerationRun, result: GenerationResult) -> str:
    """Write the files, then mark the run succeeded and create its rows in one transaction.

    File names carry the attempt (``candidate_file_name``): an attempt that lost its run (it was
    requeued while only slow, and another attempt took over) writes names no other attempt
    writes, so it can never change the files the winner's rows point at, and when ``succeed``
    tells it that it lost, it deletes exactly the files it wrote. The rows exist only if the run
    succeeded, so there are never duplicates.
    """
    storage = candidate_storage()
    attempt = run.attempts
    names: list[str] = []
    try:
        for image in result.images:
            name = candidate_file_name(run.pk, image.index, image.seed, attempt=attempt)
            names.append(storage.save(name, ContentFile(image.png)))
    except OSError as exc:
        # The caller fails the run; run_discard_files then deletes what this attempt wrote.
        raise CouldNotSave(_save_error_message(exc)) from exc
    if attempt > 1:
        # What earlier attempts wrote before they died: no row will ever point at it (only a live
        # attempt records rows), so it goes before the success, and a run that shows succeeded
        # has exactly its own files in storage.
        run_discard_files(run=run, attempts=range(1, attempt))
    won = _commit_success(run, result, names)
    if won:
        logger.info(
            "run %s succeeded: load %.2f s, pipeline %.2f s", run.pk, result.load_seconds, result.inference_seconds
        )
        _make_thumbnails(run, result)
        return "succeeded"
    # Lost: cancelled, or the run is another attempt's now. These names are this attempt's alone.
    for name in names:
        storage.delete(name)
    if not run_cancel_and_discard(run=run, worker_stopped=True):
        run.refresh_from_db()
        if run.is_finished:
            run_discard_files(run=run)
    run.refresh_from_db()
    logger.info(
        "run %s: attempt %s lost the run (now %s); deleted its %s files", run.pk, attempt, run.status, len(names)
    )
    return run.status


def _make_thumbnails(run: GenerationRun, result: GenerationResult) -> None:
    """The grid's WebP thumbnails of a run that succeeded, made before the worker takes its next task.

    After the commit, not before: the editor sees the candidates as soon as they exist (making
    the thumbnails first put ~0.5 s between the last step and the run card showing them, 11% of a
    small run; bench/engine_overhead.py). A tile that asks in the moment between gets its
    thumbnail made by the web, under the same content-addressed name. A failure here (a full
    disk) leaves the run succeeded, since its images are safe: the web makes what is missing.
    """
    try:
        thumbnails_ensure_batch([(image.sha256, image.png) for image in result.images])
    except Exception:
        logger.warning("run %s: making thumbnails failed; the dashboard makes them when asked", run.pk, exc_info=True)


# A database that went away while the rows are written (a PostgreSQL restart takes a second or
# two) is waited for this long in all before the run is failed: the images are already made.
COMMIT_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)


def _commit_success(run: GenerationRun, result: GenerationResult, names: list[str]) -> bool:
    """Mark the run succeeded and create its rows in one transaction; True when this attempt won.

    A connection lost during the transaction is retried on a new connection. The claim-like
    UPDATE in ``succeed`` makes a retry safe, and a commit that went through although its
    answer was lost is recognised by its rows: this attempt's file names are in them.
    """
    variation_seeds: list[int | None] = [None] * len(result.images)
    if run.variation_seeds:
        variation_seeds = list(run.variation_seeds)
    attempt = run.attempts
    images: list[GeneratedImage] = list(result.images)
    for delay in (*COMMIT_RETRY_DELAYS, None):
        try:
            with transaction.atomic():
                if not run.succeed(result.load_seconds, result.inference_seconds):
                    recorded = Candidate.objects.filter(run_id=run.pk, image__in=names).count()
                    return bool(names) and recorded == len(names)
                Candidate.objects.bulk_create(
                    Candidate(
                        run=run,
                        index=image.index,
                        seed=image.seed,
                        variation_seed=variation_seeds[image.index],
                        image=name,
                        width=image.width,
                        height=image.height,
                        sha256=image.sha256,
                    )
                    for image, name in zip(images, names, strict=True)
                )
                run_apply_review_policy(run)
            return True
        except (OperationalError, InterfaceError):
            if delay is None:
                raise
            logger.warning(
                "run %s: recording attempt %s's success failed; trying again in %s s",
                run.pk,
                attempt,
                delay,
                exc_info=True,
            )
            _drop_connection()
            time.sleep(delay)
            # succeed() refreshes the instance only when it wins: keep this attempt's number.
            run.attempts = attempt
    raise AssertionError("unreachable")


def _save_error_message(exc: OSError) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename else ""
    hint = ""
    if exc.errno == errno.ENOSPC:
        hint = " Free some space where the candidates are stored (HOFFDESK_DATA_DIR), then make the run again."
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = " Check that the worker may write to the candidates folder, then make the run again."
    return f"Could not save the images: {reason}{where}.{hint}"


def _record_energy(run: GenerationRun, *, attempt: int, before: float | None) -> None:
    """The GPU energy of a run that succeeded: the counter's rise since ``before``, or the
    ``HOFFDESK_GPU_WATTS`` estimate. A ComfyUI run used another machine's GPU, so this card's
    counter says nothing about it: estimated. A failure here is logged, never the run's."""
    try:
        measured = None
        if not run.runs_on_comfyui:
            measured = energy_between(before, counter_now(settings.HOFFDESK_ENERGY_READER))
        run.record_energy(measured, watts=settings.HOFFDESK_GPU_WATTS, attempt=attempt)
    except Exception:
        logger.warning("run %s: recording its energy failed", run.pk, exc_info=True)
        _drop_connection()
