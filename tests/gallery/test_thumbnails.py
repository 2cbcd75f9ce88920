"""WebP thumbnails: the grid links only them, and the thumbnail route serves, caches and versions them."""

from __future__ import annotations

import io
import re
import threading
from html.parser import HTMLParser

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.urls import reverse
from PIL import Image

import generation.thumbnails
from generation.models import Candidate, candidate_storage
from generation.thumbnails import THUMBNAIL_WIDTHS, thumbnail_name
from tests.gallery.test_review import make_run

pytestmark = pytest.mark.django_db

THUMB_ROUTE = re.compile(r"^/candidates/(?P<pk>\d+)/thumb/(?P<version>[0-9a-f]{16})-(?P<width>\d+)\.webp$")
ONE_YEAR = 365 * 24 * 60 * 60


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.srcsets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("img", "source"):
            return
        values = dict(attrs)
        if values.get("src"):
            self.srcs.append(values["src"] or "")
        if values.get("srcset"):
            self.srcsets.append(values["srcset"] or "")


def image_urls(html: str) -> tuple[list[str], list[str]]:
    """Every ``src`` and every URL of every ``srcset`` of the page's images."""
    parser = _Images()
    parser.feed(html)
    srcset_urls = [part.strip().split()[0] for srcset in parser.srcsets for part in srcset.split(",") if part.strip()]
    return parser.srcs, srcset_urls


def thumb_url(candidate: Candidate, width: int, version: str | None = None) -> str:
    return reverse("gallery:candidate_thumbnail", args=[candidate.pk, version or candidate.sha256[:16], width])


def fetch(client, url: str):  # type: ignore[no-untyped-def]
    response = client.get(url)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response, body


def webp_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "WEBP"
        return image.size


def test_the_article_grid_links_only_webp_thumbnails_of_its_candidates(editor_client, article) -> None:
    small = make_run(article, count=2, seed=10, size=64)
    large = make_run(article, count=2, seed=20, size=640)
    candidates = {c.pk: c for c in Candidate.objects.filter(run__in=[small, large])}

    html = editor_client.get(article.get_absolute_url()).content.decode()
    srcs, srcset_urls = image_urls(html)

    assert srcs and srcset_urls
    for url in srcs + srcset_urls:
        match = THUMB_ROUTE.match(url)
        assert match, f"{url!r} is not a thumbnail URL"
        assert not url.endswith(".png")
        candidate = candidates[int(match["pk"])]
        assert match["version"] == candidate.sha256[:16]
        assert int(match["width"]) in THUMBNAIL_WIDTHS
    assert {int(THUMB_ROUTE.match(url)["pk"]) for url in srcs} == set(candidates)  # type: ignore[index]
    # srcset never offers a width wider than the image: the 64 px candidates only get 256.
    for url in srcset_urls:
        match = THUMB_ROUTE.match(url)
        assert match is not None
        if candidates[int(match["pk"])].width == 64:
            assert int(match["width"]) == THUMBNAIL_WIDTHS[0]
    assert any(int(THUMB_ROUTE.match(u)["width"]) == 512 for u in srcset_urls)  # type: ignore[index]
    assert "image.png" not in html


@pytest.mark.parametrize(("size", "width", "expected"), [(640, 256, 256), (640, 512, 512), (64, 256, 64)])
def test_a_thumbnail_is_webp_no_wider_than_asked_and_never_upscaled(
    editor_client, article, size, width, expected
) -> None:
    candidate = make_run(article, count=1, size=size).candidates.get()
    response, body = fetch(editor_client, thumb_url(candidate, width))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/webp"
    assert webp_size(body) == (expected, expected)


def test_a_thumbnail_may_be_cached_privately_for_a_year(editor_client, article) -> None:
    candidate = make_run(article, count=1).candidates.get()
    response, _ = fetch(editor_client, thumb_url(candidate, 256))
    cache_control = [part.strip() for part in response["Cache-Control"].split(",")]
    assert "private" in cache_control and "immutable" in cache_control
    max_age = [int(part.split("=", 1)[1]) for part in cache_control if part.startswith("max-age=")]
    assert max_age == [ONE_YEAR]


def test_a_thumbnail_is_made_once_and_then_served_from_the_candidates_storage(
    editor_client, article, monkeypatch
) -> None:
    candidate = make_run(article, count=1, size=640).candidates.get()
    storage = candidate_storage()
    name = thumbnail_name(candidate.sha256, 512)
    assert not storage.exists(name)  # an old candidate: no thumbnail until someone asks

    response, first = fetch(editor_client, thumb_url(candidate, 512))
    assert response.status_code == 200
    assert storage.exists(name)
    with storage.open(name, "rb") as fh:
        assert fh.read() == first
    made_at = storage.get_modified_time(name)

    def no_encoding(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the thumbnail was encoded again")

    monkeypatch.setattr(generation.thumbnails, "thumbnail_bytes", no_encoding)
    response, second = fetch(editor_client, thumb_url(candidate, 512))
    assert response.status_code == 200 and second == first
    assert storage.get_modified_time(name) == made_at


def test_a_cached_thumbnail_file_is_what_gets_served(editor_client, article) -> None:
    """The route serves the stored file as is: proof that it reads the cache rather than the PNG."""
    candidate = make_run(article, count=1, size=640).candidates.get()
    marker = io.BytesIO()
    Image.new("RGB", (7, 5), (1, 2, 3)).save(marker, format="WEBP")
    candidate_storage().save(thumbnail_name(candidate.sha256, 256), ContentFile(marker.getvalue()))

    response, body = fetch(editor_client, thumb_url(candidate, 256))
    assert response.status_code == 200 and body == marker.getvalue()


def test_a_stale_version_redirects_to_the_current_thumbnail(editor_client, article) -> None:
    candidate = make_run(article, count=1).candidates.get()
    stale = "0123456789abcdef" if not candidate.sha256.startswith("0123456789abcdef") else "fedcba9876543210"
    response = editor_client.get(thumb_url(candidate, 512, version=stale))
    assert response.status_code in (301, 302)
    assert response["Location"] == thumb_url(candidate, 512)
    assert not candidate_storage().exists(thumbnail_name(candidate.sha256, 512))


def test_an_unknown_width_is_404_and_makes_no_file(editor_client, article) -> None:
    candidate = make_run(article, count=1).candidates.get()
    response = editor_client.get(thumb_url(candidate, 300))
    assert response.status_code == 404
    assert not candidate_storage().exists(thumbnail_name(candidate.sha256, 300))


def test_an_unknown_candidate_is_404(editor_client) -> None:
    response = editor_client.get(reverse("gallery:candidate_thumbnail", args=[999999, "0" * 16, 256]))
    assert response.status_code == 404


def test_an_anonymous_request_for_a_thumbnail_is_401(client, article) -> None:
    candidate = make_run(article, count=1).candidates.get()
    response = client.get(thumb_url(candidate, 256))
    assert response.status_code == 401
    assert not candidate_storage().exists(thumbnail_name(candidate.sha256, 256))


def stored_png(candidate: Candidate) -> bytes:
    with candidate_storage().open(str(candidate.image.name), "rb") as fh:
        return fh.read()


def test_the_batch_makes_every_missing_width_of_each_image_once(article) -> None:
    """What the worker calls after a run: each width of each image, an image twice in the batch
    made once, and a thumbnail that already exists neither encoded nor written again."""
    first, second = make_run(article, count=2, size=640).candidates.order_by("index")
    storage = candidate_storage()
    existing = thumbnail_name(second.sha256, 256)
    storage.save(existing, ContentFile(b"made earlier"))

    written = generation.thumbnails.thumbnails_ensure_batch(
        [(first.sha256, stored_png(first)), (second.sha256, stored_png(second)), (first.sha256, stored_png(first))]
    )

    assert sorted(written) == sorted(
        [thumbnail_name(first.sha256, 256), thumbnail_name(first.sha256, 512), thumbnail_name(second.sha256, 512)]
    )
    for name in written:
        width = int(name.rsplit("-w", 1)[1].removesuffix(".webp"))
        with storage.open(name, "rb") as fh:
            assert webp_size(fh.read())[0] == width
    with storage.open(existing, "rb") as fh:
        assert fh.read() == b"made earlier"
    for candidate in (first, second):  # no second copy of anything under another name
        folder = f"thumbs/{candidate.sha256[:2]}"
        files = sorted(f for f in storage.listdir(folder)[1] if candidate.sha256 in f)
        assert files == sorted(thumbnail_name(candidate.sha256, w).rsplit("/", 1)[1] for w in THUMBNAIL_WIDTHS)


def test_a_thumbnail_written_by_a_racing_maker_leaves_one_file(article, monkeypatch) -> None:
    """The worker and the web make the same thumbnail in the same moment: the second writer finds
    the name taken after its ``exists`` check. The local storage would keep its copy under a new
    name that nothing points at; it is deleted, so the folder holds exactly one file."""
    candidate = make_run(article, count=1, size=640).candidates.get()
    storage = candidate_storage()
    name = thumbnail_name(candidate.sha256, 256)
    real_exists = storage.exists

    def raced_exists(path: str) -> bool:
        if path == name and not real_exists(path):
            storage.save(name, ContentFile(generation.thumbnails.thumbnail_bytes(stored_png(candidate), 256)))
            return False  # the answer this maker read, just before the other one wrote the file
        return real_exists(path)

    monkeypatch.setattr(storage, "exists", raced_exists)
    generation.thumbnails.thumbnail_ensure(image_name=str(candidate.image.name), sha256=candidate.sha256, width=256)

    folder = name.rsplit("/", 1)[0]
    assert [f for f in storage.listdir(folder)[1] if candidate.sha256 in f] == [name.rsplit("/", 1)[1]]


class _HalfThenRest(ContentFile):
    """File content that a storage streams in two halves, pausing between them until released:
    what a worker writing a large thumbnail to a slow disk looks like to a reader in the meantime."""

    def __init__(self, data: bytes, half_written: threading.Event, go_on: threading.Event) -> None:
        super().__init__(data)
        self.half_written, self.go_on = half_written, go_on

    def chunks(self, chunk_size: int | None = None):  # type: ignore[no-untyped-def]
        data = self.read()
        yield data[: len(data) // 2]
        self.half_written.set()
        assert self.go_on.wait(10), "the reader never let the writer finish"
        yield data[len(data) // 2 :]


class _SlowStorage(FileSystemStorage):
    """The candidates' folder, written through Django's own ``_save`` at the pace of a slow disk."""

    def __init__(self, location: str, half_written: threading.Event, go_on: threading.Event) -> None:
        super().__init__(location=location)
        self.half_written, self.go_on = half_written, go_on

    def _save(self, name, content):  # type: ignore[no-untyped-def]
        return super()._save(name, _HalfThenRest(content.read(), self.half_written, self.go_on))  # type: ignore[misc]


def test_a_reader_never_gets_a_half_written_thumbnail(editor_client, article) -> None:
    """The worker is half-way through writing a thumbnail when a tile asks for it: the reader gets
    a whole WebP (it makes its own, or waits for none) and never the half on disk, which the
    browser would otherwise cache for a year."""
    candidate = make_run(article, count=1, size=640).candidates.get()
    storage = candidate_storage()
    png = stored_png(candidate)
    whole = generation.thumbnails.thumbnail_bytes(png, 512)
    half_written, go_on = threading.Event(), threading.Event()
    slow = _SlowStorage(str(storage.location), half_written, go_on)  # type: ignore[attr-defined]
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            generation.thumbnails.thumbnail_ensure(
                image_name=str(candidate.image.name), sha256=candidate.sha256, width=512, png=png, storage=slow
            )
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    writer = threading.Thread(target=worker)
    writer.start()
    try:
        assert half_written.wait(10), "the writer never started"
        response, body = fetch(editor_client, thumb_url(candidate, 512))
        by_function = generation.thumbnails.thumbnail_ensure(
            image_name=str(candidate.image.name), sha256=candidate.sha256, width=512
        )
        with storage.open(by_function, "rb") as fh:
            seen_by_function = fh.read()
    finally:
        go_on.set()
        writer.join(10)
    assert not failures
    assert response.status_code == 200
    assert body == whole, f"the reader got {len(body)} of {len(whole)} bytes"
    assert seen_by_function == whole
    with storage.open(thumbnail_name(candidate.sha256, 512), "rb") as fh:
        assert fh.read() == whole  # and the worker's finished copy is whole too
    folder = thumbnail_name(candidate.sha256, 512).rsplit("/", 1)[0]
    assert [f for f in storage.listdir(folder)[1] if candidate.sha256 in f] == [
        thumbnail_name(candidate.sha256, 512).rsplit("/", 1)[1]
    ]  # no temporary file left behind
