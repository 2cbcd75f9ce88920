"""The Costs page's report on a big history: 200,000 candidates (50,000 runs over 30 weeks).

Seeds a throw-away SQLite data folder (rows only, no image files), then times
``gallery.costs.cost_report`` in-process for the page's default window (12 weeks) and for two
years (104 weeks), median of ``--repeats``, and counts its queries (a fixed handful whatever
the size of the history). Exit status 0 when the 12-week median is under ``--target-ms``,
1 when it is not, 2 on errors.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from _common import BenchError, machine_line

TARGET_MS = 1000.0
MODELS = ("flux-dev-nf4", "sdxl-turbo", "sd3-medium")
REVIEWS = ("pending", "rejected", "rejected", "approved")


def seed(candidates: int, per_run: int = 4) -> None:
    from django.utils import timezone

    from gallery.models import Article, Publication
    from generation.models import Candidate, GenerationRun, StylePreset

    runs_wanted = max(candidates // per_run, 1)
    articles = Article.objects.bulk_create(
        Article(slug=f"bench-{i}", title=f"Bench {i}", summary="s", content_type="technical", tone="calm")
        for i in range(max(runs_wanted // 25, 1))
    )
    presets: list[StylePreset | None] = [*StylePreset.objects.all()[:5]] or [None]
    now = timezone.now()
    runs = [
        GenerationRun(
            article=articles[i % len(articles)],
            preset=presets[i % len(presets)],
            model_profile=MODELS[i % len(MODELS)],
            prompt="p",
            width=64,
            height=64,
            steps=1,
            guidance=0,
            base_seed=1,
            count=per_run,
            status="succeeded",
            queued_at=now - timedelta(hours=(i * 7) % (24 * 7 * 30)),
            finished_at=now - timedelta(hours=(i * 7) % (24 * 7 * 30)),
            gpu_seconds=100.0,
            energy_joules=35_000.0,
            energy_estimated=i % 3 == 0,
            cloud_cost=Decimal("0.25") if i % 50 == 0 else None,
        )
        for i in range(runs_wanted)
    ]
    GenerationRun.objects.bulk_create(runs, batch_size=2000)
    run_ids = list(GenerationRun.objects.values_list("pk", flat=True))
    Candidate.objects.bulk_create(
        (
            Candidate(
                run_id=run_id,
                index=j,
                seed=j,
                image=f"runs/{run_id}-{j}.png",
                width=64,
                height=64,
                sha256="0" * 64,
                review_status=REVIEWS[(run_id + j) % len(REVIEWS)],
            )
            for run_id in run_ids
            for j in range(per_run)
        ),
        batch_size=5000,
    )
    heroes, seen = [], set()
    for candidate in Candidate.objects.filter(index=0).select_related("run").order_by("pk")[: len(articles) * 4]:
        article_id = candidate.run.article_id
        if article_id is not None and article_id not in seen:
            seen.add(article_id)
            heroes.append(
                Publication(
                    article_id=article_id,
                    candidate=candidate,
                    alt_text="x",
                    status="published",
                    finished_at=now,
                )
            )
    Publication.objects.bulk_create(heroes)


def time_report(weeks: int, repeats: int) -> tuple[float, int]:
    """Median milliseconds of one report, and the queries one report makes."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from gallery.costs import cost_report

    times = []
    for _ in range(repeats):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            cost_report(weeks=weeks)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), len(queries.captured_queries)


def measure(args: argparse.Namespace, data_dir: Path) -> int:
    os.environ.update(
        {
            "HOFFDESK_DATA_DIR": str(data_dir),
            "HOFFDESK_DEBUG": "false",
            "DJANGO_SETTINGS_MODULE": "hoffdesk_images.settings",
        }
    )
    os.environ.pop("DATABASE_URL", None)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import django

    django.setup()
    from django.core.management import call_command

    from generation.models import Candidate

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    seed(args.candidates)
    print(f"seeded {Candidate.objects.count():,} candidates in {time.perf_counter() - started:.1f} s")
    print(machine_line())
    ok = True
    for weeks in (12, 104):
        median, queries = time_report(weeks, args.repeats)
        line = f"cost_report(weeks={weeks}): median {median:.0f} ms, {queries} queries"
        if weeks == 12:
            passed = median < args.target_ms
            ok &= passed
            line += f"  target < {args.target_ms:g} ms  {'PASS' if passed else 'FAIL'}"
        print(line)
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--candidates", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--target-ms", type=float, default=TARGET_MS, help=f"12-week median (default {TARGET_MS:g})")
    args = parser.parse_args()
    if args.candidates < 1 or args.repeats < 1:
        parser.error("--candidates and --repeats must be at least 1")
    data_dir = Path(tempfile.mkdtemp(prefix="hoffdesk-costs-"))
    try:
        return measure(args, data_dir)
    except BenchError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
