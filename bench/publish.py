"""How much publishing adds to uploading the same files with bare boto3, against moto's S3 server.

It starts ``moto_server`` (from this virtualenv) on loopback, points the five ``HOFFDESK_R2_*``
variables at it (so ``publish`` is the S3 backend that ``s3_storage_options`` configures for R2,
public base URL https://images.hoffdesk.test), seeds a throw-away data folder with an editor, an
article and approved candidates (distinct 1216x640 PNGs: gradients, a glow and soft shapes, in the
local candidates storage), then runs interleaved rounds, each into a fresh bucket so every
rendition is really uploaded:

- ``renditions_make`` for each candidate, on the side (timed): the exact files publishing makes;
- publish: for each candidate ``publication_request`` (not timed), then ``publication_run`` in
  this process, the light-queue task's body without a ``qcluster`` (timed: the total of the calls;
  it reads the PNG, makes the renditions again, HEADs and uploads each through django-storages,
  then updates the rows); the keys it records are checked to be those of the side renditions;
- bare boto3: the same rendition bytes (same count, same sizes) uploaded to other keys of the same
  bucket with one plain boto3 client (region ``auto``, same endpoint, SigV4, checksums only when
  required, as R2 needs), ``put_object`` with ``ContentType``, sequentially (timed, client
  creation included, as the publish figure includes the storage's).

It prints, as medians over the rounds: the publish total, the ``renditions_make`` total, the
upload part of publishing (publish total - renditions_make total), the bare boto3 total, the ratio
of the upload parts, and the headline ratio publish total / (renditions_make total + bare boto3
total): both sides make the same files and upload them (target <= 1.5). Then the time to publish
the same images a 2nd time (new candidates, same pictures, same article: every key already there,
nothing uploaded).

Usage: .venv/bin/python bench/publish.py [--candidates N] [--rounds N] [--quick] [--keep]
``--quick`` is a smoke run (10 candidates, 1 round); ``--target`` replaces the headline target.
The data folder is a new temp folder, deleted at the end unless ``--keep``; it never touches
./data, and moto is stopped on the way out. The exit status is 0 when the headline ratio meets its
target (PASS), 1 when it misses it (FAIL), and 2 on errors (moto does not start, a publish fails,
the published keys differ from the side renditions').
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _common import BenchError, free_port, log_tail, machine_line, start_moto_server, stop_server
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WIDTH, HEIGHT = 1216, 640  # the size the hero is generated at (1200x630 rounded up to 16)
PUBLIC_BASE_URL = "https://images.hoffdesk.test"
ACCESS_KEY = "bench-access-key"
SECRET_KEY = "bench-secret-key"  # moto accepts any key; a throw-away server
REGION = "auto"
USERNAME = "bench-editor"
RATIO_TARGET = 1.5

CANDIDATES_S3_VARIABLES = (
    "HOFFDESK_CANDIDATES_ENDPOINT_URL",
    "HOFFDESK_CANDIDATES_BUCKET",
    "HOFFDESK_CANDIDATES_ACCESS_KEY_ID",
    "HOFFDESK_CANDIDATES_SECRET_ACCESS_KEY",
)


# --- pictures -----------------------------------------------------------------------------------


def draw_picture(number: int) -> bytes:
    """A distinct 1216x640 PNG: a two-colour gradient, a soft glow and blurred shapes (no noise)."""
    rng = np.random.default_rng(1000 + number)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    x /= WIDTH
    y /= HEIGHT
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * x + np.sin(angle) * y
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    pixels = start * (1 - ramp[..., None]) + end * ramp[..., None]
    cx, cy = rng.uniform(0.2, 0.8, 2)
    radius = np.sqrt(((x - cx) * WIDTH / HEIGHT) ** 2 + (y - cy) ** 2)
    pixels += rng.uniform(-90, 90, 3) * np.exp(-((radius / rng.uniform(0.15, 0.45)) ** 2))[..., None]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(6, 12))):
        colour = tuple(int(value) for value in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            left, top = int(rng.integers(-80, WIDTH)), int(rng.integers(-80, HEIGHT))
            box = [left, top, left + int(rng.integers(40, 420)), top + int(rng.integers(40, 320))]
            draw.ellipse(box, fill=colour)
        else:
            corners = [(int(rng.integers(-80, WIDTH + 80)), int(rng.integers(-80, HEIGHT + 80))) for _ in range(6)]
            draw.polygon(corners[: int(rng.integers(3, 7))], fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.5, 4.0))))
    draw = ImageDraw.Draw(image)  # a crisp mark of its own, so no two pictures are alike
    draw.rectangle([24, 24, 64 + 8 * (number % 40), 44], fill=(255 - number % 256, (number * 37) % 256, 120))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --- moto ---------------------------------------------------------------------------------------


def s3_client(endpoint_url: str) -> Any:
    """A plain boto3 client for moto: region ``auto``, SigV4, checksums only when required (R2)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(
            signature_version="s3v4",
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def create_bucket(endpoint_url: str, name: str) -> None:
    s3_client(endpoint_url).create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})


def bucket_contents(endpoint_url: str, name: str) -> tuple[int, int]:
    """(objects, bytes) in a bucket."""
    count = size = 0
    for page in s3_client(endpoint_url).get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            count += 1
            size += int(item["Size"])
    return count, size


# --- data ---------------------------------------------------------------------------------------


def approved_candidate(article: Any, editor: Any, seed: int, png: bytes) -> Any:
    """A succeeded run of one 1216x640 candidate, its PNG in the candidates storage, approved."""
    from django.core.files.base import ContentFile

    from generation.models import Candidate, GenerationRun, candidate_storage

    run = GenerationRun.objects.create(
        article=article,
        model_profile="tiny-flux",
        prompt="A lighthouse made of SQLite pages. photoreal",
        width=WIDTH,
        height=HEIGHT,
        steps=2,
        guidance=1.0,
        base_seed=seed,
        count=1,
        status="succeeded",
    )
    name = candidate_storage().save(f"runs/{run.pk:06d}/00-seed{seed}.png", ContentFile(png))
    candidate = Candidate.objects.create(
        run=run,
        index=0,
        seed=seed,
        image=name,
        width=WIDTH,
        height=HEIGHT,
        sha256=hashlib.sha256(png).hexdigest(),
    )
    if not candidate.approve(editor):
        raise BenchError(f"candidate {candidate.pk} could not be approved")
    return candidate


def alt_text(number: int) -> str:
    return f"Benchmark picture {number}: a gradient with soft shapes"


def focal(number: int) -> tuple[float, float]:
    return (0.3 + 0.4 * ((number * 7) % 10) / 9, 0.3 + 0.4 * ((number * 3) % 10) / 9)


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Round:
    bucket: str
    renditions_s: float = 0.0
    publish_s: float = 0.0
    bare_s: float = 0.0
    publish_calls: list[float] = field(default_factory=list)
    inner_renditions_s: float = 0.0  # renditions_make inside the publication_run calls
    objects: int = 0
    bytes: int = 0

    @property
    def upload_s(self) -> float:
        return self.publish_s - self.renditions_s

    @property
    def upload_ratio(self) -> float:
        return self.upload_s / self.bare_s

    @property
    def ratio(self) -> float:
        return self.publish_s / (self.renditions_s + self.bare_s)


def publish_storages(bucket: str) -> dict[str, Any]:
    """``settings.STORAGES`` with the publish backend's bucket replaced (all else as configured)."""
    from django.conf import settings

    configured: dict[str, Any] = dict(settings.STORAGES)
    publish: dict[str, Any] = dict(configured["publish"])
    if publish.get("BACKEND") != "storages.backends.s3.S3Storage":
        raise BenchError(f"the publish storage is {publish.get('BACKEND')}, not the S3 backend")
    publish["OPTIONS"] = {**publish["OPTIONS"], "bucket_name": bucket}
    configured["publish"] = publish
    return configured


@dataclass
class Published:
    calls: list[float]  # seconds per publication_run
    publications: list[Any]
    inner_renditions_s: float  # of which in renditions_make (a diagnostic)

    @property
    def total_s(self) -> float:
        return sum(self.calls)


def publish_all(bucket: str, article: Any, editor: Any, candidates: list[Any]) -> Published:
    """Request and run a publication per candidate into ``bucket``."""
    from django.test.utils import override_settings

    from gallery import publishing
    from gallery.models import Publication
    from gallery.publishing import publication_request, publication_run

    times: list[float] = []
    publications: list[Any] = []
    inner: list[float] = []
    make = publishing.renditions_make

    def timed_make(*args: Any, **kwargs: Any) -> Any:
        """The task's own renditions_make call, timed (a perf_counter pair per publish)."""
        started = time.perf_counter()
        try:
            return make(*args, **kwargs)
        finally:
            inner.append(time.perf_counter() - started)

    # A fresh storage instance for this bucket: its client is made in the first publication_run.
    publishing.renditions_make = timed_make  # type: ignore[assignment]
    try:
        with override_settings(STORAGES=publish_storages(bucket)):
            for number, candidate in enumerate(candidates):
                publication = publication_request(
                    candidate=candidate, by=editor, alt_text=alt_text(number), focal=focal(number)
                )
                started = time.perf_counter()
                outcome = publication_run(publication.pk)
                times.append(time.perf_counter() - started)
                publication = Publication.objects.get(pk=publication.pk)
                if outcome != "published":
                    raise BenchError(f"publication {publication.pk} {outcome}: {publication.error}")
                publications.append(publication)
    finally:
        publishing.renditions_make = make
    return Published(times, publications, sum(inner))


def bare_upload(endpoint_url: str, bucket: str, prefix: str, renditions: list[list[Any]]) -> float:
    """Seconds to upload every rendition with one plain boto3 client, sequentially."""
    started = time.perf_counter()
    client = s3_client(endpoint_url)
    for number, files in enumerate(renditions):
        for rendition in files:
            client.put_object(
                Bucket=bucket,
                Key=f"{prefix}/{number:03d}/{rendition.sha256[:16]}-{rendition.name}.{rendition.extension}",
                Body=rendition.data,
                ContentType=rendition.content_type,
            )
    return time.perf_counter() - started


def check_published(article: Any, publications: list[Any], renditions: list[list[Any]], uploaded: bool) -> None:
    """The keys and sizes each publication recorded are those of the side renditions."""
    from gallery.publishing import rendition_key

    for publication, files in zip(publications, renditions, strict=True):
        expected = [(rendition_key(article, r), len(r.data)) for r in files]
        recorded = [(row["key"], row["bytes"]) for row in publication.renditions]
        if recorded != expected:
            raise BenchError(
                f"publication {publication.pk} stored other files than renditions_make made on the side: "
                f"{recorded[:2]} ... vs {expected[:2]} ..."
            )
        if uploaded and publication.uploaded != len(files):
            raise BenchError(f"publication {publication.pk} uploaded {publication.uploaded} of {len(files)} files")
        if not uploaded and publication.uploaded != 0:
            raise BenchError(f"re-publication {publication.pk} uploaded {publication.uploaded} files, expected 0")
        if not all(url.startswith(PUBLIC_BASE_URL + "/") for url in publication.urls.values()):
            raise BenchError(f"publication {publication.pk} has URLs off {PUBLIC_BASE_URL}: {publication.urls}")


def measure(args: argparse.Namespace, data_dir: Path) -> int:
    port = free_port()
    endpoint_url = f"http://127.0.0.1:{port}"
    log_path = data_dir / "moto_server.log"
    for name in CANDIDATES_S3_VARIABLES:
        os.environ.pop(name, None)  # candidates stay in the local folder
    os.environ.pop("DATABASE_URL", None)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "hoffdesk_images.settings",
            "HOFFDESK_DATA_DIR": str(data_dir),
            "HOFFDESK_DEBUG": "false",
            "HOFFDESK_LOG_LEVEL": "WARNING",  # not one INFO line per publication
            "HOFFDESK_R2_ENDPOINT_URL": endpoint_url,
            "HOFFDESK_R2_BUCKET": "bench-publish-1",
            "HOFFDESK_R2_ACCESS_KEY_ID": ACCESS_KEY,
            "HOFFDESK_R2_SECRET_ACCESS_KEY": SECRET_KEY,
            "HOFFDESK_R2_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        }
    )
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command

    from gallery.models import Article
    from gallery.renditions import renditions_make

    moto = start_moto_server(port, log_path)
    try:
        print(f"moto_server on {endpoint_url} (log: {log_path})", flush=True)
        call_command("migrate", verbosity=0)
        editor = get_user_model().objects.create_user(username=USERNAME, password="bench-editor-password-1")
        editor.groups.set([Group.objects.get_or_create(name="editors")[0]])
        article = Article.objects.create(
            slug="bench-publish",
            title="Publishing fifty heroes",
            summary="How long publishing takes against bare boto3.",
            content_type="technical",
        )

        started = time.perf_counter()
        pictures = [draw_picture(number) for number in range(args.candidates)]
        if len({hashlib.sha256(png).digest() for png in pictures}) != len(pictures):
            raise BenchError("two benchmark pictures are identical")
        png_bytes = sum(len(png) for png in pictures)
        print(
            f"drew {len(pictures)} pictures {WIDTH}x{HEIGHT} ({png_bytes / len(pictures) / 1e3:.0f} kB PNG each) "
            f"in {time.perf_counter() - started:.1f} s",
            flush=True,
        )

        # Warm-up (imports, Pillow's encoders, boto3's models), not counted: one publish, one put.
        create_bucket(endpoint_url, "bench-warm-up")
        warm = approved_candidate(article, editor, 900_000, pictures[0])
        publish_all("bench-warm-up", article, editor, [warm])
        bare_upload(
            endpoint_url,
            "bench-warm-up",
            "bare",
            [renditions_make(pictures[0], alt_text=alt_text(0), card_title=article.title)],
        )

        rounds: list[Round] = []
        side: list[list[Any]] = []
        for number in range(args.rounds):
            current = Round(bucket=f"bench-publish-{number + 1}")
            create_bucket(endpoint_url, current.bucket)
            candidates = [
                approved_candidate(article, editor, 1000 * (number + 1) + index, png)
                for index, png in enumerate(pictures)
            ]
            side = []
            started = time.perf_counter()
            for index, png in enumerate(pictures):
                side.append(
                    renditions_make(png, alt_text=alt_text(index), focal=focal(index), card_title=article.title)
                )
            current.renditions_s = time.perf_counter() - started
            if len({r.sha256 for files in side for r in files}) != sum(len(files) for files in side):
                raise BenchError("two renditions have the same bytes: the pictures are not distinct enough")

            order = ("publish", "bare") if number % 2 == 0 else ("bare", "publish")  # interleaved
            for step in order:
                if step == "publish":
                    published = publish_all(current.bucket, article, editor, candidates)
                    current.publish_calls, current.publish_s = published.calls, published.total_s
                    current.inner_renditions_s = published.inner_renditions_s
                    check_published(article, published.publications, side, uploaded=True)
                else:
                    current.bare_s = bare_upload(endpoint_url, current.bucket, f"bare/{number + 1}", side)
            current.objects = sum(len(files) for files in side)
            current.bytes = sum(len(r.data) for files in side for r in files)
            stored = bucket_contents(endpoint_url, current.bucket)
            if stored != (2 * current.objects, 2 * current.bytes):
                raise BenchError(
                    f"bucket {current.bucket} holds {stored[0]} objects, {stored[1]} bytes; expected "
                    f"{2 * current.objects}, {2 * current.bytes} (the published files and the bare copies)"
                )
            rounds.append(current)
            print(
                f"round {number + 1} ({'publish first' if number % 2 == 0 else 'bare first'}): "
                f"renditions_make {current.renditions_s:.2f} s, publish {current.publish_s:.2f} s "
                f"(upload part {current.upload_s:.2f} s; its own renditions_make {current.inner_renditions_s:.2f} s), "
                f"bare boto3 {current.bare_s:.2f} s, "
                f"upload ratio {current.upload_ratio:.2f}, headline ratio {current.ratio:.3f}",
                flush=True,
            )

        # The same pictures published again (new candidates, same article, last round's bucket):
        # every rendition's key is already there, so nothing is uploaded.
        again_candidates = [
            approved_candidate(article, editor, 900_001 + index, png) for index, png in enumerate(pictures)
        ]
        again = publish_all(rounds[-1].bucket, article, editor, again_candidates)
        check_published(article, again.publications, side, uploaded=False)
        stored = bucket_contents(endpoint_url, rounds[-1].bucket)
        if stored[0] != 2 * rounds[-1].objects:
            raise BenchError(f"the 2nd publish added objects: {stored[0]}, expected {2 * rounds[-1].objects}")
    except BenchError:
        raise
    except Exception as exc:
        print(f"moto_server log (tail):\n{log_tail(log_path)}", file=sys.stderr)
        raise BenchError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        stop_server(moto)

    median = statistics.median
    publish_s = median(r.publish_s for r in rounds)
    renditions_s = median(r.renditions_s for r in rounds)
    upload_s = median(r.upload_s for r in rounds)
    bare_s = median(r.bare_s for r in rounds)
    upload_ratio = median(r.upload_ratio for r in rounds)
    ratio = median(r.ratio for r in rounds)
    inner_s = median(r.inner_renditions_s for r in rounds)
    per_call = [t for r in rounds for t in r.publish_calls]
    objects, size = rounds[-1].objects, rounds[-1].bytes
    n = args.candidates
    verdict = "PASS" if ratio <= args.target else "FAIL"
    width = 58
    lines = [
        "",
        "== summary ==",
        machine_line(),
        f"data: {n} approved candidates {WIDTH}x{HEIGHT} ({png_bytes / n / 1e3:.0f} kB PNG each), "
        f"{objects // n} renditions each ({', '.join(settings.HOFFDESK_PUBLISH_FORMATS)}): "
        f"{objects} objects, {size / 1e6:.1f} MB per round; moto_server on loopback, a fresh bucket per round",
        f"medians over {len(rounds)} interleaved round(s) (per-round figures above):",
        f"{f'publish total ({n} publication_run)':<{width}} {publish_s:8.2f} s "
        f"(per call median {median(per_call) * 1000:.0f} ms)",
        f"{f'renditions_make total (same {n}, on the side)':<{width}} {renditions_s:8.2f} s",
        f"{'upload part of publishing (publish - renditions_make)':<{width}} {upload_s:8.2f} s "
        f"(HEAD + upload per object, rows)",
        f"{'  diagnostic: renditions_make inside publication_run':<{width}} {inner_s:8.2f} s "
        f"(publish - that: {median(r.publish_s - r.inner_renditions_s for r in rounds):.2f} s)",
        f"{f'bare boto3 put_object of the same {objects} files':<{width}} {bare_s:8.2f} s",
        f"{'upload ratio (upload part / bare boto3)':<{width}} {upload_ratio:8.2f}",
        f"{'headline ratio publish / (renditions_make + bare boto3)':<{width}} {ratio:8.3f}   "
        f"target <= {args.target:g}  {verdict}",
        "  (headline: the same work on both sides, make the files and upload them; each ratio is the median "
        "of the per-round ratios)",
        f"{f'2nd publish of the same {n} images (0 uploaded)':<{width}} {again.total_s:8.2f} s "
        f"(per call median {median(again.calls) * 1000:.0f} ms; its own renditions_make "
        f"{again.inner_renditions_s:.2f} s, the rest {again.total_s - again.inner_renditions_s:.2f} s)",
    ]
    print("\n".join(lines))
    return 0 if verdict == "PASS" else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 candidates, 1 round")
    parser.add_argument("--keep", action="store_true", help="keep the temp data folder")
    parser.add_argument(
        "--target", type=float, default=RATIO_TARGET, help=f"largest headline ratio (default {RATIO_TARGET:g})"
    )
    args = parser.parse_args()
    if args.quick:
        args.candidates, args.rounds = 10, 1
    if args.candidates < 1 or args.rounds < 1:
        parser.error("--candidates and --rounds must be at least 1")

    data_dir = Path(tempfile.mkdtemp(prefix="hoffdesk-publish-"))
    try:
        return measure(args, data_dir)
    except BenchError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
