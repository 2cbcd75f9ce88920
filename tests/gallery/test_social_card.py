"""The social card: the hero at 1200x630 with the article's title on a scrim that keeps the text
readable (WCAG contrast measured on the card's own pixels), byte-identical for the same input, and
published beside the other renditions and offered in the snippet (og:image and a CSS overlay)."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageFilter

from gallery.renditions import renditions_make
from gallery.social_card import CARD_SIZE, MIN_FONT_SIZE, TEXT_COLOUR, social_card_bytes, text_mask

LONG_TITLE = (
    "Why our SQLite write-ahead log survived a power cut, a kernel panic and a very determined cat in one week"
)[:120].ljust(120, "!")


def _channel(value: int) -> float:
    """WCAG 2.x: one sRGB channel (0..255) to linear light; computed here, not borrowed from the code under test."""
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _luminance(rgb: object) -> float:
    assert isinstance(rgb, tuple)
    r, g, b = rgb
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def _worst_contrast_under_text(card: bytes, hero_title: str, hero: Image.Image) -> float:
    """The lowest contrast between the text colour and any pixel of the card inside the text box
    that is not part of a glyph (glyph pixels grown by 4 px, so anti-aliasing and JPEG ringing
    around the letters do not count as background)."""
    _, layout = social_card_bytes(hero, hero_title)
    image = Image.open(io.BytesIO(card)).convert("RGB")
    glyphs = text_mask(layout).filter(ImageFilter.MaxFilter(9))
    left, top, right, bottom = layout.text_box
    pixels, mask = image.load(), glyphs.load()
    assert pixels is not None and mask is not None
    text = _luminance(TEXT_COLOUR)
    brightest = max(_luminance(pixels[x, y]) for x in range(left, right) for y in range(top, bottom) if mask[x, y] == 0)
    return (max(text, brightest) + 0.05) / (min(text, brightest) + 0.05)


def test_the_same_hero_and_title_give_a_byte_identical_card() -> None:
    hero = Image.effect_noise(CARD_SIZE, 60).convert("RGB")
    first, _ = social_card_bytes(hero, "A lighthouse made of SQLite pages")
    second, _ = social_card_bytes(hero.copy(), "A lighthouse made of SQLite pages")
    other, _ = social_card_bytes(hero, "A lighthouse made of Postgres pages")
    assert first == second
    assert first != other
    assert Image.open(io.BytesIO(first)).size == CARD_SIZE == (1200, 630)


@pytest.mark.parametrize("colour", [(255, 255, 255), (0, 0, 0)], ids=["white", "black"])
def test_the_title_keeps_a_contrast_of_at_least_4_5_to_1_on_any_hero(colour) -> None:
    hero = Image.new("RGB", CARD_SIZE, colour)
    card, layout = social_card_bytes(hero, "Readable on any hero")
    assert _worst_contrast_under_text(card, "Readable on any hero", hero) >= 4.5
    assert layout.contrast >= 4.5


def test_a_120_character_title_fits_without_clipping_at_a_readable_size() -> None:
    hero = Image.new("RGB", CARD_SIZE, (200, 180, 90))
    assert len(LONG_TITLE) == 120
    _, layout = social_card_bytes(hero, LONG_TITLE)
    assert layout.font_size >= MIN_FONT_SIZE >= 32
    assert " ".join(layout.lines) == " ".join(LONG_TITLE.split())  # every word, nothing cut off
    left, top, right, bottom = layout.text_box
    assert 0 < left < right < CARD_SIZE[0] and 0 < top < bottom < CARD_SIZE[1]
    inked = text_mask(layout).getbbox()
    assert inked is not None
    assert left <= inked[0] and top <= inked[1] and inked[2] <= right and inked[3] <= bottom


def test_the_card_is_published_beside_the_renditions_only_with_a_title() -> None:
    source = Image.new("RGB", (1216, 640), (20, 40, 90))
    buffer = io.BytesIO()
    source.save(buffer, format="PNG")
    with_card = renditions_make(buffer.getvalue(), alt_text="A blue field", card_title="Blue", formats=["webp"])
    without = renditions_make(buffer.getvalue(), alt_text="A blue field", formats=["webp"])
    [card] = [r for r in with_card if r.name == "card"]
    assert (card.format, card.width, card.height, card.extension) == ("jpeg", 1200, 630, "jpg")
    assert not any(r.name == "card" for r in without)


@pytest.mark.django_db
def test_a_published_hero_has_its_card_and_the_page_offers_og_image_and_the_css_overlay(
    editor_client, editor, article
) -> None:
    from html import unescape

    from tests.gallery.test_publishing import approved_candidate, publish_now

    publication = publish_now(approved_candidate(article, editor), editor)
    card_url = publication.urls["card.jpg"]
    [row] = [r for r in publication.renditions if r["name"] == "card"]
    assert (row["width"], row["height"]) == (1200, 630) and row["key"].endswith("-card.jpg")
    served = editor_client.get(card_url)
    assert served.status_code == 200
    assert Image.open(io.BytesIO(b"".join(served.streaming_content))).size == (1200, 630)

    page = unescape(editor_client.get(article.get_absolute_url()).content.decode())
    assert f'<meta property="og:image" content="{card_url}">' in page
    assert '<meta property="og:image:width" content="1200">' in page
    assert '<meta name="twitter:card" content="summary_large_image">' in page
    hero_jpg = publication.urls["hero.jpg"]
    overlay = page.split('data-testid="overlay-snippet"', 1)[1].split("</textarea>", 1)[0]
    assert f'src="{hero_jpg}"' in overlay and f">{article.title}</" in overlay
