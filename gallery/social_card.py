"""The social card: the hero at 1200x630 with the article's title set over it, for Open Graph.

Why overlay the title ourselves rather than ask the model to paint it: a diffusion model spells
short words at best, and a card must carry the exact title. So the card is the hero, a dark
slate scrim (the dashboard's dark-mode palette) across its lower part and the title in the
vendored DejaVu Sans Bold (Bitstream Vera licence, ``static/fonts/``; ``HOFFDESK_CARD_FONT`` names
another ``.ttf``/``.otf``), wrapped and sized to fit.

The scrim is as light as the hero allows: its opacity rises until the worst pixel under the text
box (measured on the composited pixels, with the WCAG 2 relative-luminance formula) is at least
``TARGET_CONTRAST`` against the text colour. The target is above WCAG's 4.5:1 so JPEG's rounding
cannot take the pixels around the letters below it. Everything is integer geometry and fixed encoder options, so the
same hero and title always give the same bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from django.conf import settings
from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    from gallery.models import Publication

CARD_SIZE: Final = (1200, 630)
TEXT_COLOUR: Final = (248, 250, 252)  # slate-50
SCRIM_COLOUR: Final = (15, 23, 42)  # slate-900, the dashboard's --bg
ACCENT_COLOUR: Final = (251, 113, 133)  # rose-400, the dashboard's --rose
TARGET_CONTRAST: Final = 6.0
MIN_FONT_SIZE: Final = 34
MAX_FONT_SIZE: Final = 72
MAX_LINES: Final = 4
MARGIN: Final = 72  # left and right of the text, and below it
PADDING: Final = 32  # scrim above the text's first line
ACCENT_WIDTH: Final = 8
LINE_SPACING: Final = 1.2
MIN_SCRIM_ALPHA: Final = 140  # of 255: the scrim reads as a band even on a dark hero
JPEG_QUALITY: Final = 88
DEFAULT_FONT: Final = Path(settings.BASE_DIR) / "static" / "fonts" / "DejaVuSans-Bold.ttf"

Box = tuple[int, int, int, int]


class CardFontMissing(ValueError):
    """The configured card font cannot be opened."""


@dataclass(frozen=True)
class CardLayout:
    """Where the title went: its font, lines, the box the text stays inside, the scrim."""

    font_path: str
    font_size: int
    line_height: int
    lines: tuple[str, ...]
    text_box: Box
    scrim_box: Box
    scrim_alpha: int
    contrast: float


def card_font_path() -> str:
    return str(getattr(settings, "HOFFDESK_CARD_FONT", "") or DEFAULT_FONT)


@lru_cache(maxsize=64)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(path, size)
    except OSError as exc:
        raise CardFontMissing(f"HOFFDESK_CARD_FONT: cannot open the font file {path!r} ({exc})") from exc


def _linear(channel: np.ndarray) -> np.ndarray:
    c = channel / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def relative_luminance(rgb: tuple[int, int, int]) -> float:
    """WCAG 2 relative luminance of one sRGB colour (0..255 channels)."""
    r, g, b = (float(_linear(np.array(v, dtype=np.float64))) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: float, b: float) -> float:
    """WCAG contrast ratio of two relative luminances (1..21)."""
    return (max(a, b) + 0.05) / (min(a, b) + 0.05)


def _worst_contrast(image: Image.Image, box: Box) -> float:
    """The lowest contrast between the text colour and any pixel of ``image`` inside ``box``."""
    pixels = np.asarray(image.crop(box), dtype=np.float64)
    lum = 0.2126 * _linear(pixels[..., 0]) + 0.7152 * _linear(pixels[..., 1]) + 0.0722 * _linear(pixels[..., 2])
    text = relative_luminance(TEXT_COLOUR)
    return min(contrast_ratio(text, float(lum.max())), contrast_ratio(text, float(lum.min())))


def _wrap(title: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; a word wider than a line is broken between letters."""
    lines: list[str] = []
    line = ""
    for word in title.split():
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while font.getlength(word) > width:  # one very long word: cut it where it overflows
            cut = max([1, *(i for i in range(1, len(word)) if font.getlength(word[:i]) <= width)])
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    if line:
        lines.append(line)
    return lines


def _fit(title: str, font_path: str) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The largest size at which the title wraps into ``MAX_LINES``; at the smallest size a title
    that still does not fit is cut at the last whole word with an ellipsis."""
    width = CARD_SIZE[0] - 2 * MARGIN
    for size in range(MAX_FONT_SIZE, MIN_FONT_SIZE - 1, -2):
        font = _font(font_path, size)
        lines = _wrap(title, font, width)
        if len(lines) <= MAX_LINES:
            return font, lines
    lines = lines[:MAX_LINES]
    last = lines[-1]
    while last and font.getlength(f"{last}…") > width:
        last = last.rsplit(" ", 1)[0] if " " in last else last[:-1]
    lines[-1] = f"{last}…"
    return font, lines


def card_layout(image: Image.Image, title: str, *, font_path: str | None = None) -> tuple[Image.Image, CardLayout]:
    """The hero (already 1200x630) with its scrim, and where the title goes on it."""
    if image.size != CARD_SIZE:
        raise ValueError(f"the card is made from a {CARD_SIZE[0]}x{CARD_SIZE[1]} image, not {image.size}")
    path = font_path or card_font_path()
    title = " ".join(title.split())
    font, lines = _fit(title, path)
    ascent, descent = font.getmetrics()
    line_height = round(font.size * LINE_SPACING)
    block = (len(lines) - 1) * line_height + ascent + descent
    top = CARD_SIZE[1] - MARGIN - block
    text_box = (MARGIN, top, CARD_SIZE[0] - MARGIN, top + block)
    scrim_box = (0, top - PADDING, CARD_SIZE[0], CARD_SIZE[1])
    base = image.convert("RGB")
    band = base.crop(scrim_box)
    scrim = Image.new("RGB", band.size, SCRIM_COLOUR)
    alpha = MIN_SCRIM_ALPHA
    while True:
        composed = base.copy()
        composed.paste(Image.blend(band, scrim, alpha / 255), scrim_box[:2])
        contrast = _worst_contrast(composed, text_box)
        if contrast >= TARGET_CONTRAST or alpha == 255:
            break
        alpha = min(255, alpha + 8)
    layout = CardLayout(path, int(font.size), line_height, tuple(lines), text_box, scrim_box, alpha, contrast)
    return composed, layout


def _draw_title(draw: ImageDraw.ImageDraw, layout: CardLayout, fill: int | tuple[int, int, int]) -> None:
    font = _font(layout.font_path, layout.font_size)
    left, top, _, _ = layout.text_box
    for index, line in enumerate(layout.lines):
        draw.text((left, top + index * layout.line_height), line, font=font, fill=fill, anchor="la")


def text_mask(layout: CardLayout) -> Image.Image:
    """The title's glyphs alone (white on black, card-sized): where the ink is."""
    mask = Image.new("L", CARD_SIZE, 0)
    _draw_title(ImageDraw.Draw(mask), layout, 255)
    return mask


def social_card(image: Image.Image, title: str, *, font_path: str | None = None) -> tuple[Image.Image, CardLayout]:
    """The finished card image and its layout."""
    card, layout = card_layout(image, title, font_path=font_path)
    draw = ImageDraw.Draw(card)
    left, top, _, bottom = layout.text_box
    draw.rectangle((left - 24 - ACCENT_WIDTH, top, left - 25, bottom), fill=ACCENT_COLOUR)
    _draw_title(draw, layout, TEXT_COLOUR)
    return card, layout


def social_card_bytes(
    image: Image.Image, title: str, *, xmp: bytes = b"", font_path: str | None = None
) -> tuple[bytes, CardLayout]:
    """The card as a JPEG (what every Open Graph reader takes) with fixed encoder options."""
    card, layout = social_card(image, title, font_path=font_path)
    card.info = {}
    buffer = io.BytesIO()
    options: dict[str, object] = {"quality": JPEG_QUALITY, "optimize": True, "progressive": True}
    if xmp:
        options["xmp"] = xmp
    card.save(buffer, format="JPEG", **options)
    return buffer.getvalue(), layout


# --- what the blog pastes: Open Graph tags for the card, and the live-text alternative ----------


def _row(publication: Publication, name: str, fmt: str | None = None) -> dict[str, Any] | None:
    return next((r for r in publication.renditions if r["name"] == name and (fmt is None or r["format"] == fmt)), None)


def open_graph_snippet(publication: Publication) -> str:
    """``<meta>`` tags for the page's ``<head>`` naming the card as the share image ("" without a card)."""
    card = _row(publication, "card")
    if card is None:
        return ""
    return "\n".join(
        [
            f'<meta property="og:image" content="{escape(card["url"])}">',
            f'<meta property="og:image:type" content="image/{card["format"]}">',
            f'<meta property="og:image:width" content="{card["width"]}">',
            f'<meta property="og:image:height" content="{card["height"]}">',
            f'<meta property="og:image:alt" content="{escape(publication.alt_text)}">',
            '<meta name="twitter:card" content="summary_large_image">',
        ]
    )


def overlay_snippet(publication: Publication) -> str:
    """The title as live HTML text over the hero (for themes that prefer real text to a baked card):
    the same dark scrim and light text, so the contrast holds wherever the theme puts it."""
    hero = _row(publication, "hero", "jpeg") or _row(publication, "hero")
    if hero is None:
        return ""
    scrim = "rgba({}, {}, {}, .82)".format(*SCRIM_COLOUR)
    text = "#{:02x}{:02x}{:02x}".format(*TEXT_COLOUR)
    accent = "#{:02x}{:02x}{:02x}".format(*ACCENT_COLOUR)
    return "\n".join(
        [
            f'<figure class="hoffdesk-card" style="position:relative;margin:0;max-width:{hero["width"]}px">',
            f'  <img src="{escape(hero["url"])}" width="{hero["width"]}" height="{hero["height"]}" '
            f'alt="{escape(publication.alt_text)}" style="display:block;width:100%;height:auto">',
            f'  <figcaption style="position:absolute;left:0;right:0;bottom:0;padding:1rem 6%;background:{scrim};'
            f"color:{text};border-left:.5rem solid {accent};font:700 clamp(1.1rem, 4vw, 2.6rem)/1.2 "
            f"'DejaVu Sans', system-ui, sans-serif\">{escape(publication.article.title)}</figcaption>",
            "</figure>",
        ]
    )
