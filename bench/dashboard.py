"""How fast the editors' dashboard answers with a realistic amount of data, over real HTTP.

It seeds a throw-away data folder with 1,000 articles and 20,000 candidates (real 512x512 PNGs
drawn to compress like pictures: gradients, shapes, a soft blur, mild grain; no thumbnails, the
page makes those on demand), one of them (``bench-fifty``) with exactly 50 candidates, then starts
``manage.py runserver --noreload`` (HOFFDESK_DEBUG=false) as a subprocess and prints:

- the time from starting the web process to its first answer of ``/login/`` (target < 2 s);
- per URL, the wall time of a whole warm HTTP request on loopback, median and p95 over
  ``--requests`` interleaved rounds (target p95 < 50 ms): the article list, its page 20, a search,
  the 50-candidate article page and one of its thumbnails;
- the bytes of the images a browser at DPR 1 loads for the 50-candidate page (each distinct
  ``<img src>``, not the srcset's 2x; target < 1.5 MB, and none of them a PNG);
- the loupe's first paint: its full-view fragment (as the lightbox asks, with ``HX-Request``) and
  then the 512 px WebP thumbnail that paints before the PNG arrives (target p95 < 2x the per-URL
  target: two requests);
- the web process's VmRSS after all requests (target < 150 MB).

Usage: .venv/bin/python bench/dashboard.py [--articles N] [--candidates N] [--requests N]
       [--data-dir DIR] [--quick] [--keep] [--reuse]
``--quick`` is a smoke run (100 articles, 2,000 candidates). The default data folder is a new
temp folder, deleted at the end unless ``--keep``; it never touches ./data. ``--reuse`` with
``--data-dir`` skips seeding when that folder already holds a seeded database (thumbnails made
by an earlier run are then already there). ``--p95-target-ms`` replaces the p95 target. The exit
status is 0 when every target is met (PASS), 1 when any is missed (FAIL), and 2 on errors (a non-200
answer, a server that exits or stays silent for 2 minutes).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import multiprocessing
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import Message
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import numpy as np
from _common import BenchError, free_port, machine_line, stop_server
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZE = 512
POOL_SIZE = 200
PROCESSES = 2
FIFTY_SLUG = "bench-fifty"
FIFTY_RUNS = (8, 8, 8, 8, 8, 8, 2)
SEARCH_WORD = "SQLite"
USERNAME = "bench-editor"
PASSWORD = "bench-editor-password-1"  # a throw-away user in a throw-away database
WARMUP = 3

P95_TARGET_MS = 50.0
IMAGES_TARGET_MB = 1.5
RSS_TARGET_MB = 150.0
START_TARGET_S = 2.0
LOUPE_TARGET_FACTOR = 2  # the loupe's first paint is two requests: its fragment, then the WebP thumbnail

TOPICS = (
    "SQLite",
    "Django",
    "PostgreSQL",
    "htmx",
    "Rust",
    "Kubernetes",
    "Python",
    "WebP",
    "diffusers",
    "Nginx",
    "Redis",
    "Git",
)
TITLE_SHAPES = (
    "Tuning {t} for a small VPS",
    "What I learned moving to {t}",
    "{t} in production, a year later",
    "A quick tip on {t} timeouts",
    "Why {t} is enough for us",
    "Debugging {t} at 3 a.m.",
    "{t} from scratch: a tutorial",
    "The boring parts of {t}",
)
TONES = ("dry", "playful", "calm", "urgent", "")
CONTENT_TYPES = ("technical", "tutorial", "personal", "quick_tip")


# --- pictures -----------------------------------------------------------------------------------
# Module-level so the forked worker processes find them; _POOL is filled before the fork.


def _smooth_field(rng: np.random.Generator, cells: int, amplitude: float) -> np.ndarray:
    """Low-frequency colour texture: a small random grid upscaled bicubically."""
    small = rng.uniform(-amplitude, amplitude, (cells, cells, 3)).astype(np.float32)
    out = np.empty((SIZE, SIZE, 3), np.float32)
    for channel in range(3):
        layer = Image.fromarray(np.ascontiguousarray(small[..., channel]), mode="F")
        out[..., channel] = np.asarray(layer.resize((SIZE, SIZE), Image.Resampling.BICUBIC))
    return out


def draw_base_picture(number: int) -> bytes:
    """One pool picture as raw RGB bytes: a gradient, a glow, blurred shapes, texture, mild grain."""
    rng = np.random.default_rng(number)
    shapes = random.Random(number)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * x + np.sin(angle) * y
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    pixels = start * (1 - ramp[..., None]) + end * ramp[..., None]
    cx, cy = rng.uniform(0.2, 0.8, 2)
    radius = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
    pixels += rng.uniform(-80, 80, 3) * np.exp(-((radius / rng.uniform(0.15, 0.4)) ** 2))[..., None]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(shapes.randint(5, 10)):
        colour = (shapes.randrange(256), shapes.randrange(256), shapes.randrange(256))
        if shapes.random() < 0.5:
            left, top = shapes.randrange(-50, SIZE), shapes.randrange(-50, SIZE)
            draw.ellipse([left, top, left + shapes.randrange(30, 250), top + shapes.randrange(30, 250)], fill=colour)
        else:
            corners = [(shapes.randrange(-50, SIZE + 50), shapes.randrange(-50, SIZE + 50)) for _ in range(6)]
            draw.polygon(corners[: shapes.randint(3, 6)], fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(shapes.uniform(1.0, 3.0)))
    textured = np.asarray(image).astype(np.float32)
    textured += _smooth_field(rng, 8, 25) + _smooth_field(rng, 48, 12) + _smooth_field(rng, 160, 8)
    textured += rng.normal(0, 2.0, (SIZE, SIZE, 1)).astype(np.float32)
    return np.clip(textured, 0, 255).astype(np.uint8).tobytes()


# PNG writing: the pool picture's scanlines are filtered (Up) and deflated (level 1) once, in
# bands of BAND rows, each band a raw deflate piece ended by a full flush (byte-aligned, no
# back-references into the band before). A candidate re-deflates only the bands its mark touches
# and joins the pieces into one zlib stream: a valid PNG with exactly the marked picture's pixels,
# ~6 ms instead of ~40 ms for Pillow's compress_level=1 on the whole picture (checked below).
BAND = 32
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def filter_up(rows: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """PNG scanlines of ``rows`` (n, width*3) with filter Up; the picture's first row unfiltered."""
    out = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
    out[:, 0] = 2
    out[1:, 1:] = rows[1:] - rows[:-1]
    if previous is None:
        out[0, 0] = 0
        out[0, 1:] = rows[0]
    else:
        out[0, 1:] = rows[0] - previous
    return out


def deflate_band(scanlines: bytes) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
    return compressor.compress(scanlines) + compressor.flush(zlib.Z_FULL_FLUSH)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(scanlines: list[bytes], pieces: list[bytes]) -> bytes:
    adler = 1
    for band in scanlines:
        adler = zlib.adler32(band, adler)
    # zlib header (deflate, 32K window, fastest), the pieces, an empty final block, the checksum.
    stream = b"\x78\x01" + b"".join(pieces) + b"\x03\x00" + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", stream) + png_chunk(b"IEND", b"")


def pool_entry(number: int) -> tuple[bytes, list[bytes], list[bytes]]:
    """A pool picture: raw RGB, its filtered scanlines per band, and their deflated pieces."""
    raw = draw_base_picture(number)
    rows = np.frombuffer(raw, np.uint8).reshape(SIZE, SIZE * 3)
    scanlines = filter_up(rows, None)
    bands = [scanlines[top : top + BAND].tobytes() for top in range(0, SIZE, BAND)]
    return raw, bands, [deflate_band(band) for band in bands]


_POOL: list[tuple[bytes, list[bytes], list[bytes]]] = []


def write_candidate_png(task: tuple[str, int, int]) -> tuple[str, int]:
    """Copy of a pool picture with a mark unique to ``number``, written as PNG; (sha256, bytes)."""
    path, pool_index, number = task
    raw, bands, pieces = _POOL[pool_index]
    image = Image.frombytes("RGB", (SIZE, SIZE), raw)
    draw = ImageDraw.Draw(image)
    left, top = 16 + (number * 37) % (SIZE - 80), 16 + (number * 91) % (SIZE - 80)
    colour = ((number * 53) % 256, (number * 97) % 256, (number * 13) % 256)
    draw.ellipse([left, top, left + 26, top + 26], fill=colour)
    draw.text((left + 32, top + 6), str(number), fill=(255 - colour[0], 255 - colour[1], 255 - colour[2]))
    marked = np.asarray(image).reshape(SIZE, SIZE * 3)
    original = np.frombuffer(raw, np.uint8).reshape(SIZE, SIZE * 3)
    changed = np.flatnonzero(np.any(marked != original, axis=1))
    bands, pieces = list(bands), list(pieces)
    if changed.size:  # the row after a changed one changes too: Up filters against it
        for band in range(int(changed[0]) // BAND, min(int(changed[-1]) + 1, SIZE - 1) // BAND + 1):
            first = band * BAND
            previous = marked[first - 1] if first else None
            bands[band] = filter_up(marked[first : first + BAND], previous).tobytes()
            pieces[band] = deflate_band(bands[band])
    data = png_bytes(bands, pieces)
    if number < 4:  # the hand-made PNG must decode to exactly the marked picture
        with Image.open(io.BytesIO(data)) as check:
            if check.format != "PNG" or check.tobytes() != image.tobytes():
                raise BenchError(f"candidate PNG {number} does not decode to its picture")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return hashlib.sha256(data).hexdigest(), len(data)


# --- seeding ------------------------------------------------------------------------------------


@dataclass
class Seeded:
    articles: int
    runs: int
    candidates: int
    file_bytes: int
    pictures_s: float
    files_s: float
    rows_s: float
    total_s: float


def run_sizes(candidates: int) -> list[int]:
    """Every other article's runs: 4 candidates each, the remainder in one smaller run."""
    rest = candidates - sum(FIFTY_RUNS)
    if rest < 0:
        raise BenchError(f"--candidates must be at least {sum(FIFTY_RUNS)}")
    return [4] * (rest // 4) + ([rest % 4] if rest % 4 else [])


def seed(articles_wanted: int, candidates_wanted: int) -> Seeded:
    from django.conf import settings
    from django.contrib.auth.models import Group, User
    from django.db import connections, transaction
    from django.utils import timezone

    from gallery.models import Article
    from generation.models import Candidate, GenerationRun, candidate_file_name

    if articles_wanted < 2:
        raise BenchError("--articles must be at least 2")
    started = time.perf_counter()
    rng = random.Random(20261125)
    now = timezone.now()

    user = User.objects.create_user(USERNAME, password=PASSWORD)
    editors, _ = Group.objects.get_or_create(name="editors")
    user.groups.add(editors)

    articles = [
        Article(
            slug=FIFTY_SLUG,
            title="Fifty candidates: the benchmark's big article",
            summary="An article with seven runs and fifty candidates.",
            content_type="technical",
        )
    ]
    for number in range(1, articles_wanted):
        title = rng.choice(TITLE_SHAPES).format(t=rng.choice(TOPICS))
        articles.append(
            Article(
                slug=f"bench-{number:05d}",
                title=f"{title} (part {number})",
                summary=f"Summary of article {number}: {title.lower()}.",
                content_type=rng.choice(CONTENT_TYPES),
                tone=rng.choice(TONES),
                series=rng.choice(("", "", "homelab", "field notes")),
            )
        )
    with transaction.atomic():
        Article.objects.bulk_create(articles, batch_size=500)
    if any(article.pk is None for article in articles):
        raise BenchError("bulk_create did not return primary keys on this database")
    fifty, others = articles[0], articles[1:]

    plan: list[tuple[Article, int, datetime]] = []
    for number, count in enumerate(FIFTY_RUNS):
        plan.append((fifty, count, now - timedelta(hours=len(FIFTY_RUNS) - number)))
    for count in run_sizes(candidates_wanted):
        plan.append((rng.choice(others), count, now - timedelta(minutes=rng.uniform(60, 60 * 24 * 60))))
    runs = []
    for article, count, queued_at in plan:
        steps = 8
        runs.append(
            GenerationRun(
                article=article,
                model_profile="tiny-sd",
                prompt=f"{article.title}, editorial illustration, soft light",
                width=SIZE,
                height=SIZE,
                steps=steps,
                guidance=7.5,
                base_seed=rng.randrange(0, 2**32 - 64),
                count=count,
                status=GenerationRun.Status.SUCCEEDED,
                progress_step=steps,
                progress_total=steps,
                attempts=1,
                worker="bench:0",
                queued_at=queued_at,
                started_at=queued_at + timedelta(seconds=0.05),
                heartbeat_at=queued_at + timedelta(seconds=2.5),
                finished_at=queued_at + timedelta(seconds=2.6),
                load_seconds=0.0,
                gpu_seconds=2.4,
            )
        )
    with transaction.atomic():
        GenerationRun.objects.bulk_create(runs, batch_size=500)
    if any(run.pk is None for run in runs):
        raise BenchError("bulk_create did not return primary keys on this database")

    candidates_dir = Path(settings.CANDIDATES_DIR)
    candidates: list[Candidate] = []
    tasks: list[tuple[str, int, int]] = []
    for run in runs:
        finished_at = run.finished_at or now
        for index, seed_value in enumerate(run.seeds):
            name = candidate_file_name(run.pk, index, seed_value)
            status = rng.choices(("pending", "approved", "rejected"), weights=(55, 25, 20))[0]
            decided = status != "pending"
            candidates.append(
                Candidate(
                    run=run,
                    index=index,
                    seed=seed_value,
                    image=name,
                    width=SIZE,
                    height=SIZE,
                    review_status=status,
                    reviewed_by=user if decided else None,
                    reviewed_at=finished_at + timedelta(hours=1) if decided else None,
                    created_at=finished_at,
                )
            )
            tasks.append((str(candidates_dir / name), rng.randrange(POOL_SIZE), len(tasks)))
    rows_s = time.perf_counter() - started

    # Forked workers must not share this process's database connection.
    connections.close_all()
    context = multiprocessing.get_context("fork")
    phase = time.perf_counter()
    with context.Pool(PROCESSES) as pool:
        _POOL[:] = pool.map(pool_entry, range(POOL_SIZE))
    pictures_s = time.perf_counter() - phase
    print(f"  drew {POOL_SIZE} pool pictures in {pictures_s:.1f} s", flush=True)

    phase = time.perf_counter()
    file_bytes = 0
    step = max(1, len(tasks) // 10)
    with context.Pool(PROCESSES) as pool:
        for done, (candidate, (sha256, size)) in enumerate(
            zip(candidates, pool.imap(write_candidate_png, tasks, chunksize=32), strict=True), start=1
        ):
            candidate.sha256 = sha256
            file_bytes += size
            if done % step == 0 or done == len(tasks):
                print(
                    f"  wrote {done}/{len(tasks)} PNGs ({file_bytes / 1e9:.2f} GB) "
                    f"in {time.perf_counter() - phase:.0f} s",
                    flush=True,
                )
    _POOL.clear()
    files_s = time.perf_counter() - phase

    phase = time.perf_counter()
    with transaction.atomic():
        Candidate.objects.bulk_create(candidates, batch_size=1000)
    if any(candidate.pk is None for candidate in candidates):
        raise BenchError("bulk_create did not return primary keys on this database")
    heroes: dict[int, Any] = {}
    for candidate in candidates:
        owner = candidate.run.article
        if candidate.review_status == "approved" and owner is not None and owner.pk not in heroes:
            heroes[owner.pk] = candidate
    with_hero = []
    for article in articles:
        hero = heroes.get(article.pk)
        if hero is not None and (article is fifty or rng.random() < 0.4):
            article.hero_candidate = hero
            with_hero.append(article)
    with transaction.atomic():
        Article.objects.bulk_update(with_hero, ["hero_candidate"], batch_size=500)
    rows_s += time.perf_counter() - phase
    if Candidate.objects.filter(run__article=fifty).count() != sum(FIFTY_RUNS):
        raise BenchError(f"{FIFTY_SLUG} does not have {sum(FIFTY_RUNS)} candidates")
    return Seeded(
        articles=len(articles),
        runs=len(runs),
        candidates=len(candidates),
        file_bytes=file_bytes,
        pictures_s=pictures_s,
        files_s=files_s,
        rows_s=rows_s,
        total_s=time.perf_counter() - started,
    )


# --- HTTP ---------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: Message
    body: bytes
    seconds: float

    @property
    def content_length(self) -> int:
        declared = self.headers.get("Content-Length")
        return int(declared) if declared is not None else len(self.body)


class Client:
    """A tiny browser: one connection per request, cookies kept, standard library only."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(
        self,
        method: str,
        path: str,
        body: str | None = None,
        expect: Iterable[int] = (200,),
        extra: dict[str, str] | None = None,
    ) -> Answer:
        headers = {"Host": f"127.0.0.1:{self.port}", "User-Agent": "hoffdesk-bench", **(extra or {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{key}={value}" for key, value in self.cookies.items())
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Referer"] = f"http://127.0.0.1:{self.port}{path}"
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        seconds = time.perf_counter() - started
        for header in response.headers.get_all("Set-Cookie") or []:
            for key, morsel in SimpleCookie(header).items():
                self.cookies[key] = morsel.value
        answer = Answer(response.status, response.headers, data, seconds)
        if response.status not in tuple(expect):
            raise BenchError(f"{method} {path} answered {response.status}, not {tuple(expect)}: {data[:300]!r}")
        return answer

    def get(self, path: str, extra: dict[str, str] | None = None) -> Answer:
        return self.request("GET", path, extra=extra)


def loupe_first_paint(client: Client, candidate_path: str) -> tuple[float, str]:
    """Seconds from asking for the loupe (the full view as the lightbox's htmx fragment) to
    having its first picture, the WebP thumbnail that paints before the PNG arrives."""
    fragment = client.get(candidate_path, extra={"HX-Request": "true"})
    thumbs = [i["src"] for i in parse(fragment.body).images if "zoom-thumb" in i.get("class", "")]
    if not thumbs:
        raise BenchError(f"the loupe fragment {candidate_path} has no WebP thumbnail to paint first")
    thumb = client.get(local_path(candidate_path, thumbs[0]))
    return fragment.seconds + thumb.seconds, local_path(candidate_path, thumbs[0])


class PageParser(HTMLParser):
    """Every ``<img>`` (src, srcset) and every ``<input>`` (name -> value) of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.inputs: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "img":
            self.images.append(values)
        elif tag == "input" and values.get("name"):
            self.inputs[values["name"]] = values.get("value", "")


def parse(html: bytes) -> PageParser:
    parser = PageParser()
    parser.feed(html.decode("utf-8", errors="replace"))
    parser.close()
    return parser


def local_path(page: str, src: str) -> str:
    """An img src as a path on this server (relative srcs resolved against the page)."""
    parts = urlsplit(urljoin(page, src))
    return parts.path + (f"?{parts.query}" if parts.query else "")


def start_server(env: dict[str, str], port: int, log_path: Path) -> tuple[subprocess.Popen[bytes], float]:
    """``runserver`` as a subprocess; the seconds from Popen to its first answer of /login/."""
    log = log_path.open("wb")
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    deadline = started + 120
    while True:
        if server.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise BenchError(f"runserver exited with {server.returncode} before answering:\n{tail}")
        if time.perf_counter() > deadline:
            server.kill()
            server.wait()
            raise BenchError(f"runserver did not answer /login/ within 120 s (log: {log_path})")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", "/login/")
            response = connection.getresponse()
            response.read()
        except OSError:
            time.sleep(0.01)
            continue
        finally:
            connection.close()
        seconds = time.perf_counter() - started
        if response.status != 200:
            raise BenchError(f"GET /login/ answered {response.status} on start")
        return server, seconds


def log_in(client: Client) -> None:
    form = parse(client.get("/login/").body)
    token = form.inputs.get("csrfmiddlewaretoken") or client.cookies.get("csrftoken")
    if not token:
        raise BenchError("no CSRF token on /login/")
    body = urlencode({"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": token, "next": "/"})
    answer = client.request("POST", "/login/", body=body, expect=(302, 303))
    if "sessionid" not in client.cookies:
        raise BenchError(f"logging in set no session cookie (answer {answer.status})")


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise BenchError(f"no {field} in /proc/{pid}/status")


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def looks_like_candidate(src: str) -> bool:
    lowered = src.lower()
    return any(word in lowered for word in ("candidate", "thumb", "runs/"))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# --- main ---------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, data_dir: Path) -> int:
    env_values = {
        "HOFFDESK_DATA_DIR": str(data_dir),
        "HOFFDESK_DEBUG": "false",
        "DJANGO_SETTINGS_MODULE": "hoffdesk_images.settings",
    }
    os.environ.update(env_values)
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    from gallery.models import Article

    call_command("migrate", verbosity=0)
    seeded: Seeded | None = None
    if args.reuse and Article.objects.filter(slug=FIFTY_SLUG).exists():
        print(f"reusing the seeded database in {data_dir}")
    else:
        print(f"seeding {args.articles} articles and {args.candidates} candidates into {data_dir}", flush=True)
        seeded = seed(args.articles, args.candidates)
        print(
            f"seeded {seeded.articles} articles, {seeded.runs} runs, {seeded.candidates} candidates "
            f"({seeded.file_bytes / 1e9:.2f} GB of PNG) in {seeded.total_s:.1f} s: pool pictures "
            f"{seeded.pictures_s:.1f} s, PNG files {seeded.files_s:.1f} s, rows {seeded.rows_s:.1f} s",
            flush=True,
        )

    env = dict(os.environ)
    env.update(env_values)
    env["PYTHONUNBUFFERED"] = "1"
    port = free_port()
    log_path = data_dir / "runserver.log"
    server, start_s = start_server(env, port, log_path)
    try:
        print(f"runserver on 127.0.0.1:{port} answered /login/ {start_s:.2f} s after Popen (log: {log_path})")
        client = Client(port)
        log_in(client)

        fifty = f"/articles/{FIFTY_SLUG}/"
        started = time.perf_counter()
        page_html = client.get(fifty)
        print(f"first GET {fifty}: {page_html.seconds * 1000:.0f} ms")
        page = parse(page_html.body)
        srcs: list[str] = []
        with_srcset = 0
        for image in page.images:
            if image.get("srcset"):
                with_srcset += 1
            src = image.get("src", "")
            if src and local_path(fifty, src) not in srcs:
                srcs.append(local_path(fifty, src))
        if not srcs:
            raise BenchError(f"{fifty} has no <img src>")
        cold = [client.get(src) for src in srcs]  # the first load makes thumbnails on demand
        cold_s = time.perf_counter() - started
        print(
            f"first load of {fifty} and its {len(srcs)} images (thumbnails made on demand): "
            f"{cold_s:.2f} s, slowest image {max(answer.seconds for answer in cold) * 1000:.0f} ms"
        )

        loaded = [(src, client.get(src)) for src in srcs]
        image_bytes = sum(answer.content_length for _, answer in loaded)
        types: dict[str, int] = {}
        for _, answer in loaded:
            kind = answer.headers.get_content_type()
            types[kind] = types.get(kind, 0) + 1
        pngs = [src for src, answer in loaded if answer.headers.get_content_type() == "image/png"]
        candidate_imgs = [image for image in page.images if looks_like_candidate(image.get("src", ""))]
        thumbnails = [
            src
            for src, answer in loaded
            if looks_like_candidate(src) and answer.headers.get_content_type() != "image/png"
        ]
        print(
            f"{fifty}: {len(page.images)} <img> ({len(candidate_imgs)} of candidates, {with_srcset} with srcset, "
            f"2x not loaded at DPR 1), {len(srcs)} distinct src, {image_bytes / 1e6:.3f} MB, "
            f"types {', '.join(f'{kind} x{count}' for kind, count in sorted(types.items()))}"
        )
        if len(thumbnails) < sum(FIFTY_RUNS):
            print(
                f"WARNING: only {len(thumbnails)} <img> on {fifty} look like candidate thumbnails "
                f"(not PNG), expected {sum(FIFTY_RUNS)}: the page may still show full PNGs"
            )
        if pngs:
            print(f"FAIL: {len(pngs)} of the page's images are PNGs (image/png), e.g. {pngs[0]}")

        urls = {
            "article list /": "/",
            "list page 20": "/?page=20",
            f"search q={SEARCH_WORD}": "/?" + urlencode({"q": SEARCH_WORD}),
            "50-candidate article": fifty,
            "one thumbnail": srcs[0],
        }
        for path in urls.values():
            for _ in range(WARMUP):
                client.get(path)
        times: dict[str, list[float]] = {label: [] for label in urls}
        sizes: dict[str, int] = {}
        for _ in range(args.requests):
            for label, path in urls.items():
                answer = client.get(path)
                times[label].append(answer.seconds * 1000)
                sizes[label] = len(answer.body)

        loupe_path = "/".join(srcs[0].split("/")[:3]) + "/"  # /candidates/<pk>/ of the page's first thumbnail
        loupe_cold_s, loupe_thumb = loupe_first_paint(client, loupe_path)  # its 512 px thumbnail made on demand
        loupe_ms = [loupe_first_paint(client, loupe_path)[0] * 1000 for _ in range(WARMUP + args.requests)][WARMUP:]

        rss_mb = vm_kib(server.pid, "VmRSS") / 1024
        hwm_mb = vm_kib(server.pid, "VmHWM") / 1024
    finally:
        stop_server(server)

    width = max(len(label) for label in urls) + 6
    p95_target = args.p95_target_ms
    met = [
        start_s < START_TARGET_S,
        *(p95(values) < p95_target for values in times.values()),
        p95(loupe_ms) < LOUPE_TARGET_FACTOR * p95_target,
        image_bytes / 1e6 < IMAGES_TARGET_MB,
        not pngs,
        rss_mb < RSS_TARGET_MB,
    ]
    lines = [
        "",
        "== summary ==",
        machine_line(),
    ]
    if seeded is not None:
        lines.append(
            f"data: {seeded.articles} articles, {seeded.runs} runs, {seeded.candidates} candidates; "
            f"seeding {seeded.total_s:.1f} s ({PROCESSES} processes)"
        )
    lines.append(
        f"{'start -> first /login/':<{width}} {start_s:8.2f} s              target < {START_TARGET_S:g} s    "
        f"{verdict(start_s < START_TARGET_S)}"
    )
    for label, values in times.items():
        worst = p95(values)
        lines.append(
            f"{'p95 ' + label:<{width}} {worst:8.1f} ms (median {statistics.median(values):6.1f}) "
            f"target < {p95_target:g} ms  {verdict(worst < p95_target)}   "
            f"[{urls[label]}, {sizes[label] / 1024:.0f} KiB]"
        )
    loupe_target = LOUPE_TARGET_FACTOR * p95_target
    lines.append(
        f"{'p95 loupe first paint':<{width}} {p95(loupe_ms):8.1f} ms (median {statistics.median(loupe_ms):6.1f}) "
        f"target < {loupe_target:g} ms  {verdict(p95(loupe_ms) < loupe_target)}   "
        f"[fragment {loupe_path} + {loupe_thumb}; cold {loupe_cold_s * 1000:.0f} ms]"
    )
    image_mb = image_bytes / 1e6
    lines += [
        f"{'images of the 50-candidate page':<{width}} {image_mb:8.3f} MB ({len(srcs)} images)   "
        f"target < {IMAGES_TARGET_MB:g} MB  {verdict(image_mb < IMAGES_TARGET_MB)}",
        f"{'PNGs among them':<{width}} {len(pngs):8d}                 target 0         {verdict(not pngs)}",
        f"{'web process VmRSS':<{width}} {rss_mb:8.1f} MB (peak {hwm_mb:.0f})   target < {RSS_TARGET_MB:g} MB  "
        f"{verdict(rss_mb < RSS_TARGET_MB)}",
        f"requests: {WARMUP} warm-up then {args.requests} interleaved rounds per URL, one connection each, loopback",
        f"overall: {sum(met)} of {len(met)} targets met  {verdict(all(met))}",
    ]
    print("\n".join(lines))
    return 0 if all(met) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--articles", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--data-dir", type=Path, help="a fresh (empty or missing) folder; default: a temp folder")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 articles, 2,000 candidates")
    parser.add_argument("--keep", action="store_true", help="keep the temp data folder")
    parser.add_argument("--reuse", action="store_true", help="with --data-dir: reuse an already seeded database")
    parser.add_argument(
        "--p95-target-ms", type=float, default=P95_TARGET_MS, help=f"largest p95 per URL (default {P95_TARGET_MS:g})"
    )
    args = parser.parse_args()
    if args.quick:
        args.articles, args.candidates = 100, 2000
    if args.requests < 2:
        parser.error("--requests must be at least 2")

    temporary = args.data_dir is None
    if args.data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="hoffdesk-dashboard-"))
    else:
        data_dir = args.data_dir.resolve()
        if data_dir.exists() and any(data_dir.iterdir()) and not args.reuse:
            parser.error(f"{data_dir} is not empty: give a fresh folder (or --reuse)")
        data_dir.mkdir(parents=True, exist_ok=True)
    try:
        return measure(args, data_dir)
    except BenchError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    finally:
        if temporary and not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        elif temporary:
            print(f"kept {data_dir}")


if __name__ == "__main__":
    sys.exit(main())
