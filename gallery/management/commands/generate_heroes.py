from __future__ import annotations

import time
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Exists, OuterRef, QuerySet

from gallery.models import Article
from gallery.wand import article_wand
from generation.models import GenerationRun, RequestedVia

ACTIVE = (GenerationRun.Status.QUEUED, GenerationRun.Status.RUNNING)


def articles_to_wand(*, missing: bool) -> QuerySet[Article]:
    """Articles the batch would wand, oldest first; never one with a run queued or running."""
    active = GenerationRun.objects.filter(article=OuterRef("pk"), status__in=ACTIVE)
    articles = Article.objects.annotate(busy=Exists(active)).filter(busy=False)
    if missing:
        articles = articles.filter(hero_candidate__isnull=True)
    return articles.order_by("created_at", "slug")


class Command(BaseCommand):
    help = (
        "Queue a Magic Wand run for each article (with --missing: each article without a hero). An article "
        "that already has a run queued or running is skipped, so running it twice queues nothing new."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--missing", action="store_true", help="only articles without a hero")
        parser.add_argument("--limit", type=int, help="queue at most N runs")
        parser.add_argument("--style", help="image style slug (default: auto, the content type's preset)")
        parser.add_argument("--count", help="candidates per article (default 4)")
        parser.add_argument("--dry-run", action="store_true", help="list what would be queued; queue nothing")
        parser.add_argument("--wait", action="store_true", help="follow the runs to the end; exit 1 if any failed")

    def handle(self, *args: Any, **options: Any) -> None:
        limit = options["limit"]
        if limit is not None and limit < 1:
            raise CommandError(f"--limit must be at least 1, not {limit}")
        articles = list(articles_to_wand(missing=options["missing"]))
        skipped_busy = Article.objects.count() - len(articles)
        if limit is not None:
            articles = articles[:limit]
        if options["dry_run"]:
            for article in articles:
                self.stdout.write(f"would queue {article.slug}")
            self.stdout.write(f"dry run: {len(articles)} would be queued; nothing was queued")
            return
        from tqdm import tqdm

        queued: list[GenerationRun] = []
        refused: list[tuple[str, str]] = []
        for article in tqdm(articles, desc="queueing", unit="article", file=self.stderr._out):
            try:
                run = article_wand(
                    article=article, style=options["style"], count=options["count"], requested_via=RequestedVia.CLI
                )
            except ValidationError as exc:
                reason = "; ".join(f"{f}: {' '.join(m)}" for f, m in exc.message_dict.items())
                refused.append((article.slug, reason))
                continue
            queued.append(run)
        for slug, reason in refused:
            self.stderr.write(f"{slug}: refused: {reason}")
        self.stdout.write(
            f"queued {len(queued)}, refused {len(refused)}, skipped {skipped_busy} "
            f"(a hero already, or a run queued or running)"
        )
        if options["wait"] and queued:
            self._wait(queued)
        if refused and not queued:
            raise CommandError(f"every article was refused ({len(refused)}); nothing was queued")

    def _wait(self, runs: list[GenerationRun]) -> None:
        from tqdm import tqdm

        ids = [run.pk for run in runs]
        bar = tqdm(total=len(ids), desc="finished", unit="run", file=self.stderr._out)
        done = 0
        try:
            while done < len(ids):
                time.sleep(1.0)
                now = GenerationRun.objects.filter(pk__in=ids, status__in=GenerationRun.FINISHED).count()
                bar.update(now - done)
                done = now
        except KeyboardInterrupt:
            raise CommandError("stopped waiting; the runs go on in the worker") from None
        finally:
            bar.close()
        statuses = dict(GenerationRun.objects.filter(pk__in=ids).values_list("pk", "status"))
        failed = [pk for pk, status in statuses.items() if status != GenerationRun.Status.SUCCEEDED]
        self.stdout.write(f"{len(ids) - len(failed)} succeeded, {len(failed)} did not: {failed}")
        if failed:
            raise SystemExit(1)
