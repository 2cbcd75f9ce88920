"""Published renditions: exact sizes, focal crops, no recipe leaks, IPTC AI-disclosure read back by exiftool."""

from __future__ import annotations

import io
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image, features

from gallery.renditions import (
    DIGITAL_SOURCE_TYPE,
    Rendition,
    TooSmall,
    focal_crop_box,
    renditions_make,
    suggested_generation_size,
    xmp_packet,
)
from generation.engine.metadata import encode_png, read_png_text

SECRET_PROMPT = "a lighthouse at dawn, SECRETPROMPTWORD"
ALT_TEXT = 'A red "beacon" <b>square</b> & a grey sea, café'
RED_CENTRE = (1120, 320)  # the red square spans x 1100..1140, y 300..340
HERO = (1200, 630)
THUMB = (400, 210)
WIDTHS = [480, 800, 1200, 1600]
EXPECTED_FORMATS = ["webp", "jpeg"] + (["avif"] if features.check("avif") else [])


def recipe() -> dict[str, object]:
    return {
        "prompt": SECRET_PROMPT,
        "negative_prompt": "blurry, NEGATIVESECRET",
        "steps": 28,
        "sampler": "euler",
        "guidance": 3.5,
        "seed": 1234567,
        "width": 1216,
        "height": 640,
        "profile": "flux-dev",
        "batch_size": 4,
        "batch_index": 0,
        "hoffdesk_version": "0.0-test",
    }


def source_png(size: tuple[int, int] = (1216, 640)) -> bytes:
    image = Image.new("RGB", size, (128, 128, 128))
    image.paste((255, 0, 0), (1100, 300, 1140, 340))
    return encode_png(image, recipe())


def red_pixels(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as image:
        raw = image.convert("RGB").tobytes()
    return sum(1 for i in range(0, len(raw), 3) if raw[i] > 200 and raw[i + 1] < 90 and raw[i + 2] < 90)


def by_key(renditions: list[Rendition]) -> dict[tuple[str, str], Rendition]:
    return {(r.name, r.format): r for r in renditions}


@pytest.fixture(scope="module")
def png() -> bytes:
    data = source_png()
    # The source really carries the recipe, so "nothing leaks" below can fail.
    text = read_png_text(data)
    assert SECRET_PROMPT in text["parameters"] and SECRET_PROMPT in text["hoffdesk"]
    return data


@pytest.fixture(scope="module")
def renditions(png: bytes) -> list[Rendition]:
    return renditions_make(
        png, alt_text=ALT_TEXT, hero_size=HERO, thumbnail_size=THUMB, srcset_widths=WIDTHS, formats=EXPECTED_FORMATS
    )


def test_sizes_names_formats_and_order(renditions: list[Rendition]) -> None:
    names = ["hero", "thumbnail", "w480", "w800"]  # 1200 and 1600 are not smaller than the hero
    assert [(r.name, r.format) for r in renditions] == [(n, f) for n in names for f in EXPECTED_FORMATS]
    sizes = {"hero": HERO, "thumbnail": THUMB, "w480": (480, 252), "w800": (800, 420)}
    for r in renditions:
        assert (r.width, r.height) == sizes[r.name]
        with Image.open(io.BytesIO(r.data)) as image:
            assert image.format == {"webp": "WEBP", "jpeg": "JPEG", "avif": "AVIF"}[r.format]
            assert image.size == sizes[r.name], r
            assert image.mode == "RGB"
        assert r.content_type == f"image/{r.format}"
        assert r.extension == {"webp": "webp", "jpeg": "jpg", "avif": "avif"}[r.format]
        assert len(r.sha256) == 64


def test_defaults_come_from_settings(png: bytes, settings) -> None:
    settings.HOFFDESK_HERO_SIZE = (1000, 500)
    settings.HOFFDESK_THUMBNAIL_SIZE = (200, 100)
    settings.HOFFDESK_SRCSET_WIDTHS = [500]
    settings.HOFFDESK_PUBLISH_FORMATS = ["jpg"]
    result = renditions_make(png, alt_text="alt")
    assert [(r.name, r.format, r.width, r.height) for r in result] == [
        ("hero", "jpeg", 1000, 500),
        ("thumbnail", "jpeg", 200, 100),
        ("w500", "jpeg", 500, 250),
    ]


def test_focal_point_decides_what_the_square_thumbnail_keeps(png: bytes) -> None:
    def thumbnail(focal: tuple[float, float]) -> Rendition:
        result = renditions_make(png, alt_text="alt", focal=focal, thumbnail_size=(300, 300), formats=["webp"])
        return by_key(result)[("thumbnail", "webp")]

    on_red = thumbnail((RED_CENTRE[0] / 1216, RED_CENTRE[1] / 640))
    centred = thumbnail((0.5, 0.5))
    assert (on_red.width, on_red.height) == (300, 300)
    assert red_pixels(on_red.data) > 50
    assert red_pixels(centred.data) == 0


def test_focal_crop_box() -> None:
    assert focal_crop_box(1216, 640, 300, 300) == (288, 0, 928, 640)
    assert focal_crop_box(1216, 640, 300, 300, 1120 / 1216, 0.5) == (576, 0, 1216, 640)  # clamped right
    assert focal_crop_box(1216, 640, 300, 300, 0.0, 0.0) == (0, 0, 640, 640)
    assert focal_crop_box(1216, 640, 1200, 630) == (0, 1, 1216, 639)
    assert focal_crop_box(640, 1216, 100, 100, 0.5, 1.0) == (0, 576, 640, 1216)
    assert focal_crop_box(1000, 1000, 2, 1, 0.5, 0.1) == (0, 0, 1000, 500)
    with pytest.raises(ValueError):
        focal_crop_box(1216, 640, 300, 300, 1.5, 0.5)


@pytest.mark.parametrize("size", [(512, 512), (1216, 600), (1100, 700)])
def test_too_small_source_is_refused_with_what_to_generate(size: tuple[int, int]) -> None:
    with pytest.raises(TooSmall) as raised:
        renditions_make(source_png(size), alt_text="alt", hero_size=HERO)
    message = str(raised.value)
    assert f"{size[0]}x{size[1]}" in message
    assert "1200x630" in message
    assert "1216x640" in message
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    ("hero", "suggested"), [((1200, 630), (1216, 640)), ((1024, 1024), (1024, 1024)), ((1200, 675), (1216, 688))]
)
def test_suggested_generation_size(hero: tuple[int, int], suggested: tuple[int, int]) -> None:
    assert suggested_generation_size(hero) == suggested


@pytest.mark.parametrize("alt", ["", "   \n\t"])
def test_alt_text_is_required(png: bytes, alt: str) -> None:
    with pytest.raises(ValueError, match="alt text"):
        renditions_make(png, alt_text=alt)


def test_nothing_from_the_candidate_leaks(renditions: list[Rendition]) -> None:
    for r in renditions:
        lowered = r.data.lower()
        for needle in (b"secretpromptword", b"negativesecret", b"lighthouse", b"parameters", b"hoffdesk", b"seed"):
            assert needle not in lowered, (r.name, r.format, needle)
        with Image.open(io.BytesIO(r.data)) as image:
            assert not image.getexif()
            assert "exif" not in image.info
            assert not any(isinstance(v, str) and "SECRET" in v for v in image.info.values())


def test_same_input_gives_same_bytes(png: bytes, renditions: list[Rendition]) -> None:
    again = renditions_make(
        png, alt_text=ALT_TEXT, hero_size=HERO, thumbnail_size=THUMB, srcset_widths=WIDTHS, formats=EXPECTED_FORMATS
    )
    assert again == renditions
    assert [r.sha256 for r in again] == [r.sha256 for r in renditions]
    assert len({r.sha256 for r in renditions}) == len(renditions)


def test_xmp_packet_is_well_formed_and_escaped() -> None:
    packet = xmp_packet(ALT_TEXT + "\x00")
    assert packet.startswith(b'<?xpacket begin="\xef\xbb\xbf"') and packet.endswith(b'<?xpacket end="w"?>')
    assert b"&lt;b&gt;" in packet and b"&amp;" in packet and b"&quot;" in packet
    root = ET.fromstring(packet)
    ns = {
        "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
        "dc": "http://purl.org/dc/elements/1.1/",
        "ext": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    }
    assert root.findtext(".//ext:DigitalSourceType", namespaces=ns) == DIGITAL_SOURCE_TYPE
    li = root.find(".//dc:description/rdf:Alt/rdf:li", ns)
    assert li is not None and li.text == ALT_TEXT
    assert li.get("{http://www.w3.org/XML/1998/namespace}lang") == "x-default"


def test_exiftool_reads_the_disclosure_and_alt_text(renditions: list[Rendition], tmp_path: Path) -> None:
    # No skip: exiftool is a test dependency (Debian's libimage-exiftool-perl, installed by scripts/test.sh).
    seen_formats = set()
    for r in renditions:
        path = tmp_path / f"{r.name}.{r.extension}"
        path.write_bytes(r.data)
        result = subprocess.run(
            ["exiftool", "-j", "-n", "-XMP:all", str(path)], capture_output=True, text=True, check=True, timeout=60
        )
        [tags] = json.loads(result.stdout)
        assert tags.get("DigitalSourceType") == DIGITAL_SOURCE_TYPE, (path.name, tags)
        assert tags.get("Description") == ALT_TEXT, (path.name, tags)
        seen_formats.add(r.format)
    assert seen_formats == set(EXPECTED_FORMATS)
