"""WebP thumbnails of candidate PNGs, cached in the candidates storage.

Pillow only (no torch): the worker makes them right after a run succeeds, and the web makes one
on demand when a tile asks first (in that moment, or for a candidate older than this feature).
Names come from the PNG's sha256, so a changed image gets a new name and a browser may cache a
thumbnail for as long as it likes.
Files are opened and saved through the storage API, so an S3 bucket works too; ``.path`` is asked
only to move a whole local file into place (see ``_save_whole``).
"""

from __future__ import annotations

import io
import os
import posixpath
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from PIL import Image

from generation.models import candidate_storage

# Grid tiles are drawn 240 CSS pixels wide at most: 256 serves 1x screens, 512 serves 2x.
THUMBNAIL_WIDTHS = (256, 512)
WEBP_QUALITY = 78


class NoSuchThumbnailWidth(ValueError):
    pass


def thumbnail_name(sha256: str, width: int) -> str:
    return f"thumbs/{sha256[:2]}/{sha256}-w{width}.webp"


def thumbnail_bytes(png: bytes, width: int) -> bytes:
    """The WebP of ``png`` scaled down to ``width`` (never up), without any metadata."""
    return _thumbnails_of(png, (width,))[width]


def _thumbnails_of(png: bytes, widths: Sequence[int]) -> dict[int, bytes]:
    """The WebP at each of ``widths`` of one PNG, decoded once."""
    with Image.open(io.BytesIO(png)) as image:
        rgb = image.convert("RGB")
    made = {}
    for width in widths:
        scaled = rgb
        if rgb.width > width:
            height = max(1, round(rgb.height * width / rgb.width))
            scaled = rgb.resize((width, height), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        scaled.save(buffer, format="WEBP", quality=WEBP_QUALITY, method=4)
        made[width] = buffer.getvalue()
    return made


def thumbnail_ensure(
    *, image_name: str, sha256: str, width: int, png: bytes | None = None, storage: Storage | None = None
) -> str:
    """The storage name of the thumbnail, made first when it does not exist yet."""
    if width not in THUMBNAIL_WIDTHS:
        raise NoSuchThumbnailWidth(f"thumbnail width must be one of {THUMBNAIL_WIDTHS}, not {width}")
    storage = storage or candidate_storage()
    name = thumbnail_name(sha256, width)
    if storage.exists(name):
        return name
    if png is None:
        with storage.open(image_name, "rb") as fh:
            png = fh.read()
    _save_whole(storage, name, thumbnail_bytes(png, width))
    return name


def _save_whole(storage: Storage, name: str, data: bytes) -> str:
    """Write a content-addressed file whole, so that a reader sees all of it or nothing.

    ``thumbnail_ensure`` trusts a name that exists, and the view serves it ``immutable``: a file
    still being written in place would be cached half-done for a year. A local storage streams
    into the final name (Django's ``FileSystemStorage._save``), so the bytes go to a temporary
    name beside it first and ``os.replace`` moves them into place in one step. An object store
    (S3, R2) makes a PUT visible only once it is complete, so there the file is saved directly.

    Two makers (the worker right after a run, the web asked for a tile in the same moment) write
    the same bytes under the same name; on a local storage the second replace swaps in identical
    bytes. An object store that does not overwrite saves the second copy under another name,
    which nothing would point at, so that copy is deleted again.
    """
    try:
        final_path = storage.path(name)
    except NotImplementedError:  # no local file behind it: an object store, whose PUT is atomic
        saved = storage.save(name, ContentFile(data))
        if saved != name:
            storage.delete(saved)
        return name
    folder, base = posixpath.split(name)
    temporary = storage.save(posixpath.join(folder, f".{base}.{uuid.uuid4().hex}.part"), ContentFile(data))
    try:
        os.replace(storage.path(temporary), final_path)
    except BaseException:
        storage.delete(temporary)
        raise
    return name


def thumbnails_ensure_batch(pngs: Sequence[tuple[str, bytes]], *, storage: Storage | None = None) -> list[str]:
    """Every width of each ``(sha256, png)`` that lacks one; the worker calls this right after a
    run succeeds, and the names it returns are the thumbnails it made.

    The WebP encoder and the resize release the GIL, so the images are encoded on threads (one
    per core): on a 2-core machine four 512x512 candidates take about 40% of the serial time.
    Saving stays on the calling thread, since a storage backend need not be thread-safe.
    """
    storage = storage or candidate_storage()
    wanted: list[tuple[str, bytes, tuple[int, ...]]] = []
    for sha256, png in pngs:
        widths = tuple(w for w in THUMBNAIL_WIDTHS if not storage.exists(thumbnail_name(sha256, w)))
        if widths and all(sha256 != seen for seen, _, _ in wanted):
            wanted.append((sha256, png, widths))
    if not wanted:
        return []
    with ThreadPoolExecutor(max_workers=min(len(wanted), os.cpu_count() or 1)) as pool:
        encoded = list(pool.map(lambda job: _thumbnails_of(job[1], job[2]), wanted))
    return [
        _save_whole(storage, thumbnail_name(sha256, width), data)
        for (sha256, _, _), by_width in zip(wanted, encoded, strict=True)
        for width, data in by_width.items()
    ]
