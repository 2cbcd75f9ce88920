"""The files a published image becomes: the Open Graph hero, a thumbnail and srcset widths.

Pillow only (no models, no storage): ``renditions_make`` takes the approved candidate's PNG bytes
and gives back encoded files, which publishing stores under keys derived from their content hash.
So the output is deterministic: the same PNG, alt text, focal point and settings always give the
same bytes, and a re-publish uploads nothing new.

Every file is RGB, never upscaled, cropped around the editor's focal point, and carries nothing
from the candidate but its pixels: no ``parameters``/``hoffdesk`` recipe chunks, no EXIF, no ICC
profile (candidate PNGs are sRGB without one). Instead each carries an XMP packet with the IPTC
AI-disclosure (``Iptc4xmpExt:DigitalSourceType`` = ``trainedAlgorithmicMedia``) and the alt text
as ``dc:description``.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final
from xml.sax.saxutils import escape

from django.conf import settings
from PIL import Image, features

from generation.profiles import suggested_generation_size

DIGITAL_SOURCE_TYPE: Final = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"

CONTENT_TYPES: Final = {"webp": "image/webp", "jpeg": "image/jpeg", "avif": "image/avif"}
EXTENSIONS: Final = {"webp": "webp", "jpeg": "jpg", "avif": "avif"}
_FORMAT_ALIASES: Final = {"webp": "webp", "jpeg": "jpeg", "jpg": "jpeg", "avif": "avif"}
_PIL_FORMATS: Final = {"webp": "WEBP", "jpeg": "JPEG", "avif": "AVIF"}

# Generators want sides that are multiples of 16 (FLUX and SDXL latents are 1/8 of the image, in 2x2 patches).

# Characters XML 1.0 cannot hold at all, even escaped.
_XML_INVALID: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

Size = tuple[int, int]


@dataclass(frozen=True)
class Rendition:
    """One encoded file: ``name`` ("hero", "thumbnail", "w480", ...) in one ``format``."""

    name: str
    format: str
    width: int
    height: int
    data: bytes
    content_type: str

    @property
    def extension(self) -> str:
        """File extension without the dot: "webp", "jpg" or "avif"."""
        return EXTENSIONS[self.format]

    @cached_property
    def sha256(self) -> str:
        """Hex SHA-256 of ``data``, for content-addressed keys."""
        return hashlib.sha256(self.data).hexdigest()


class TooSmall(ValueError):
    """The source image cannot fill a rendition without upscaling; the message says what to generate."""


def _too_small(src: Size, what: str, need: Size, hero_size: Size) -> TooSmall:
    gen_w, gen_h = suggested_generation_size(hero_size)
    return TooSmall(
        f"This image is {src[0]}x{src[1]}; the {what} needs at least {need[0]}x{need[1]}. "
        f"Generate at {gen_w}x{gen_h} (FLUX or SDXL) and publish that."
    )


def focal_crop_box(
    src_w: int, src_h: int, out_w: int, out_h: int, focal_x: float = 0.5, focal_y: float = 0.5
) -> tuple[int, int, int, int]:
    """The largest ``(left, top, right, bottom)`` box with the output's aspect that fits the source.

    The box is centred on the focal point (fractions of the source's width and height, 0..1;
    0.5/0.5 is the centre) as far as it can be, then shifted to stay inside the image.
    """
    if min(src_w, src_h, out_w, out_h) <= 0:
        raise ValueError(f"sizes must be positive: source {src_w}x{src_h}, output {out_w}x{out_h}")
    if not (0.0 <= focal_x <= 1.0 and 0.0 <= focal_y <= 1.0):
        raise ValueError(f"focal point must be fractions from 0 to 1, got ({focal_x}, {focal_y})")
    if src_w * out_h >= src_h * out_w:  # the source is wider than the output: full height
        box_h = src_h
        box_w = max(1, min(src_w, round(src_h * out_w / out_h)))
    else:  # taller: full width
        box_w = src_w
        box_h = max(1, min(src_h, round(src_w * out_h / out_w)))
    left = min(max(round(focal_x * src_w - box_w / 2), 0), src_w - box_w)
    top = min(max(round(focal_y * src_h - box_h / 2), 0), src_h - box_h)
    return (left, top, left + box_w, top + box_h)


def xmp_packet(alt_text: str) -> bytes:
    """An XMP packet with the IPTC AI-disclosure and ``alt_text`` as ``dc:description`` (UTF-8)."""
    description = escape(_XML_INVALID.sub("", alt_text), {'"': "&quot;", "'": "&apos;"})
    packet = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:dc="http://purl.org/dc/elements/1.1/"\n'
        '    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">\n'
        f"   <Iptc4xmpExt:DigitalSourceType>{DIGITAL_SOURCE_TYPE}</Iptc4xmpExt:DigitalSourceType>\n"
        "   <dc:description>\n"
        "    <rdf:Alt>\n"
        f'     <rdf:li xml:lang="x-default">{description}</rdf:li>\n'
        "    </rdf:Alt>\n"
        "   </dc:description>\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )
    return packet.encode("utf-8")


def writable_formats(formats: Sequence[str]) -> list[str]:
    """``formats`` normalised ("jpg" is "jpeg"), deduplicated in order, without AVIF if Pillow lacks it.

    Unknown names raise ``ValueError``.
    """
    result: list[str] = []
    for name in formats:
        fmt = _FORMAT_ALIASES.get(name.strip().lower())
        if fmt is None:
            raise ValueError(f"unknown publish format {name!r}; use webp, jpeg or avif")
        if fmt == "avif" and not features.check("avif"):
            continue
        if fmt not in result:
            result.append(fmt)
    return result


def _encode(image: Image.Image, fmt: str, quality: int, xmp: bytes) -> bytes:
    options: dict[str, Any] = {"quality": quality, "xmp": xmp}
    if fmt == "webp":
        options["method"] = 4
    elif fmt == "jpeg":
        options.update(optimize=True, progressive=True)
    elif fmt == "avif":
        options["speed"] = 8
    buffer = io.BytesIO()
    image.save(buffer, format=_PIL_FORMATS[fmt], **options)
    return buffer.getvalue()


def _rgb(png: bytes) -> Image.Image:
    """The PNG's pixels as RGB (transparency flattened onto white), with no metadata attached."""
    with Image.open(io.BytesIO(png)) as source:
        source.load()
        if source.mode in ("RGBA", "LA", "PA") or (source.mode == "P" and "transparency" in source.info):
            rgba = source.convert("RGBA")
            rgb = Image.new("RGB", rgba.size, (255, 255, 255))
            rgb.paste(rgba, mask=rgba.getchannel("A"))
        else:
            rgb = source.convert("RGB")
    rgb.info = {}
    return rgb


def renditions_make(
    png: bytes,
    *,
    alt_text: str,
    focal: tuple[float, float] = (0.5, 0.5),
    hero_size: Size | None = None,
    thumbnail_size: Size | None = None,
    srcset_widths: Sequence[int] | None = None,
    formats: Sequence[str] | None = None,
    quality: int | None = None,
    card_title: str | None = None,
) -> list[Rendition]:
    """Every file to publish for one image, in a fixed order.

    The hero at exactly ``hero_size``, the thumbnail at exactly ``thumbnail_size`` (each the
    largest crop of its aspect around ``focal``, resized with LANCZOS), then for each srcset
    width smaller than the hero's (ascending) a hero-aspect rendition named ``f"w{width}"``;
    each of those in every format of ``formats`` that Pillow can write, in that order.
    With a ``card_title``, last comes the social card (``gallery.social_card``): the hero's crop
    at 1200x630 with the title set over it, one JPEG named "card".
    ``None`` means the ``HOFFDESK_*`` setting. Raises ``TooSmall`` when the source is smaller than
    the hero in either dimension (or a crop would need upscaling), ``ValueError`` for empty
    alt text or bad arguments.
    """
    if not alt_text or not alt_text.strip():
        raise ValueError("alt text is required before an image is published")
    hero_w, hero_h = tuple(hero_size or settings.HOFFDESK_HERO_SIZE)
    thumb_w, thumb_h = tuple(thumbnail_size or settings.HOFFDESK_THUMBNAIL_SIZE)
    widths = settings.HOFFDESK_SRCSET_WIDTHS if srcset_widths is None else srcset_widths
    fmts = writable_formats(settings.HOFFDESK_PUBLISH_FORMATS if formats is None else formats)
    quality = settings.HOFFDESK_PUBLISH_QUALITY if quality is None else quality
    if not fmts:
        raise ValueError("no publish format that this Pillow can write")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be 1..100, got {quality}")
    if min(hero_w, hero_h, thumb_w, thumb_h) <= 0 or any(w <= 0 for w in widths):
        raise ValueError("rendition sizes must be positive")
    hero = (hero_w, hero_h)

    image = _rgb(png)
    src = image.size
    if src[0] < hero_w or src[1] < hero_h:
        raise _too_small(src, "hero", hero, hero)

    hero_box = focal_crop_box(*src, hero_w, hero_h, *focal)
    targets: list[tuple[str, Size, tuple[int, int, int, int]]] = [
        ("hero", hero, hero_box),
        ("thumbnail", (thumb_w, thumb_h), focal_crop_box(*src, thumb_w, thumb_h, *focal)),
    ]
    for width in sorted({int(w) for w in widths if w < hero_w}):
        targets.append((f"w{width}", (width, max(1, round(width * hero_h / hero_w))), hero_box))

    xmp = xmp_packet(alt_text.strip())
    result: list[Rendition] = []
    for name, (out_w, out_h), box in targets:
        left, top, right, bottom = box
        if right - left < out_w or bottom - top < out_h:
            raise _too_small(src, name, (out_w, out_h), hero)
        resized = image.resize((out_w, out_h), Image.Resampling.LANCZOS, box=box)
        resized.info = {}
        for fmt in fmts:
            data = _encode(resized, fmt, quality, xmp)
            result.append(Rendition(name, fmt, out_w, out_h, data, CONTENT_TYPES[fmt]))
    if card_title and card_title.strip():
        result.append(_social_card(image, card_title, focal, xmp))
    return result


def _social_card(image: Image.Image, title: str, focal: tuple[float, float], xmp: bytes) -> Rendition:
    """The Open Graph card: the hero's crop at the card's size (1200x630) with the title over it."""
    from gallery.social_card import CARD_SIZE, social_card_bytes

    box = focal_crop_box(*image.size, *CARD_SIZE, *focal)
    background = image.resize(CARD_SIZE, Image.Resampling.LANCZOS, box=box)
    data, _ = social_card_bytes(background, title, xmp=xmp)
    return Rendition("card", "jpeg", *CARD_SIZE, data, CONTENT_TYPES["jpeg"])
