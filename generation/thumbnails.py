"""WebP thumbnails of candidate PNGs, cached in the candidates storage.

Pillow only (no torch): the worker makes them right after the PNGs, and the web makes one on
demand for a candidate older than this feature. Names come from the PNG's sha256, so a changed
image gets a new name and a browser may cache a thumbnail for as long as it likes.
Files are opened and saved through the storage API, never ``.path``, so an S3 bucket works too.
"""

from __future__ import annotations

import io

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
    with Image.open(io.BytesIO(png)) as image:
        rgb = image.convert("RGB")
        if rgb.width > width:
            height = max(1, round(rgb.height * width / rgb.width))
            rgb = rgb.resize((width, height), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        rgb.save(buffer, format="WEBP", quality=WEBP_QUALITY, method=4)
    return buffer.getvalue()


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
    data = thumbnail_bytes(png, width)
    # Content-addressed: two makers racing write the same bytes, so either file is right.
    storage.save(name, ContentFile(data))
    return name


def thumbnails_ensure_all(*, image_name: str, sha256: str, png: bytes | None = None) -> list[str]:
    """Every width of one candidate; the worker calls this right after writing the PNG."""
    return [thumbnail_ensure(image_name=image_name, sha256=sha256, width=w, png=png) for w in THUMBNAIL_WIDTHS]
