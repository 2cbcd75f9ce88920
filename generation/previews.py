"""Live previews of a running run: one ``RunPreview`` row per candidate, written by the worker
every few steps, read by the run card and the AUTOMATIC1111 ``progress`` endpoint, deleted when
the run ends.

The engine makes the JPEGs (``generation.engine.previews``, asked through ``PreviewingProgress``);
this module stores them. No torch here: the web reads previews through it too. A preview is a
nicety, so a database error writing one is logged and the run goes on; a preview of a run that
is not running is never shown, whatever rows a dead worker left behind, and the periodic sweep
deletes those.
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from PIL import Image

from generation.models import GenerationRun, RunPreview

logger = logging.getLogger(__name__)

# Never more than one decode in this many seconds, however fast the steps go: a preview costs
# a few milliseconds and a write, which a tiny model's 20 ms steps would feel.
PREVIEW_MIN_SECONDS = 0.5


class PreviewingProgress:
    """The worker's step callback (``on_step``) that also takes the engine's previews
    (``generation.engine.previews.PreviewSink``): one is due every ``every`` steps (0: never),
    at most one per ``min_seconds``."""

    def __init__(
        self,
        *,
        run_id: int,
        on_step: Callable[[int, int], None],
        every: int | None = None,
        min_seconds: float = PREVIEW_MIN_SECONDS,
    ) -> None:
        self.run_id = run_id
        self.on_step = on_step
        self.every = settings.HOFFDESK_PREVIEW_EVERY if every is None else every
        self.min_seconds = min_seconds
        self.last_preview: float | None = None
        # Where the engine looks for a TAESD decoder to make better previews (optional).
        self.models_dir = settings.HOFFDESK_MODELS_DIR

    def __call__(self, step: int, total: int) -> None:
        self.on_step(step, total)

    def preview_due(self, step: int) -> bool:
        if self.every <= 0 or step % self.every:
            return False
        now = time.monotonic()
        if self.last_preview is not None and now - self.last_preview < self.min_seconds:
            return False
        self.last_preview = now
        return True

    def preview(self, images: list[bytes], step: int) -> None:
        previews_write(run_id=self.run_id, images=images, step=step)


def previews_write(*, run_id: int, images: list[bytes], step: int) -> bool:
    """Replace the run's previews with ``images`` (one per candidate index) in one statement;
    False (logged, never raised) when the database refused."""
    now = timezone.now()
    rows = [
        RunPreview(run_id=run_id, index=index, step=step, image=data, updated_at=now)
        for index, data in enumerate(images)
    ]
    try:
        with transaction.atomic():
            RunPreview.objects.bulk_create(
                rows,
                update_conflicts=True,
                unique_fields=["run", "index"],
                update_fields=["step", "image", "updated_at"],
            )
    except DatabaseError:
        logger.warning("run %s: writing the step %s preview failed; the run goes on", run_id, step, exc_info=True)
        return False
    return True


def _shown(run_id: int) -> QuerySet[RunPreview]:
    return RunPreview.objects.filter(run_id=run_id, run__status=GenerationRun.Status.RUNNING)


def previews_of(*, run_id: int) -> list[RunPreview]:
    """The run's previews while it runs (index and step only, not the bytes), by index."""
    return list(_shown(run_id).only("index", "step", "run_id").order_by("index"))


def preview_image(*, run_id: int, index: int) -> bytes | None:
    """The JPEG of candidate ``index``'s preview while the run runs, else None."""
    row = _shown(run_id).filter(index=index).values_list("image", flat=True).first()
    return bytes(row) if row is not None else None


def preview_images(*, run_id: int) -> list[bytes]:
    """Every candidate's preview JPEG while the run runs, by index."""
    rows = _shown(run_id).order_by("index").values_list("image", flat=True)
    return [bytes(row) for row in rows]


def preview_grid_png(*, run_id: int) -> bytes | None:
    """The run's previews in one PNG grid while it runs (AUTOMATIC1111's ``current_image`` of a
    batch: its progress grid, as near square as the count allows), else None."""
    images = preview_images(run_id=run_id)
    if not images:
        return None
    tiles = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]
    columns = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    width, height = tiles[0].size
    grid = Image.new("RGB", (columns * width, rows * height))
    for number, tile in enumerate(tiles):
        grid.paste(tile, ((number % columns) * width, (number // columns) * height))
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    return buffer.getvalue()


def previews_delete(*, run_id: int) -> int:
    """Delete the run's previews (its attempt ended: previews are not kept)."""
    deleted, _ = RunPreview.objects.filter(run_id=run_id).delete()
    return deleted


def previews_delete_finished() -> int:
    """Delete the previews of runs that are not running (a worker that died mid-run left them)."""
    deleted, _ = RunPreview.objects.exclude(run__status=GenerationRun.Status.RUNNING).delete()
    return deleted
