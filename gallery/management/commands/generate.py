from __future__ import annotations

import json
import logging
import time
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gallery.models import Article
from generation.models import GenerationRun, RequestedVia
from generation.services import run_submit

EXIT_INVALID = 2
EXIT_NOT_SUCCEEDED = 1


def run_summary(run: GenerationRun) -> dict[str, Any]:
    return {
        "run": run.pk,
        "status": run.status,
        "error": run.error or None,
        "candidates": [
            {"id": c.pk, "seed": c.seed, "sha256": c.sha256, "width": c.width, "height": c.height}
            for c in run.candidates.order_by("index")
        ],
    }


class Command(BaseCommand):
    help = "Queue a generation run for an article; --wait follows it to the end."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--prompt", help="prompt text (default: made from the article)")
        parser.add_argument("--model", help="model profile (default: HOFFDESK_DEFAULT_MODEL or the preset's)")
        # Numbers are taken as text and checked by run_validate, so every entry point gives
        # the same messages.
        parser.add_argument("--seed", help="base seed, 0..4294967295 (default: random)")
        parser.add_argument("--count", help="number of candidates (default 4)")
        parser.add_argument("--width")
        parser.add_argument("--height")
        parser.add_argument("--steps")
        parser.add_argument("--guidance")
        parser.add_argument("--wait", action="store_true", help="show progress; exit 0 only if the run succeeded")
        parser.add_argument("--json", action="store_true", help="end with one JSON line describing the run")

    def handle(self, *args: Any, **options: Any) -> None:
        as_json = options["json"]
        # The queue's own INFO lines ("Enqueued ...") are for the worker's log, not this output.
        logging.getLogger("django-q").setLevel(logging.WARNING)
        try:
            run = self._submit(options)
        except CommandError as exc:
            if not as_json:
                raise
            # The message first, the JSON object last: even with stderr merged into stdout, the
            # last line of the output is the JSON.
            self.stderr.write(f"error: {exc}")
            self.stderr.flush()
            self.stdout.write(json.dumps({"run": None, "status": "invalid", "error": str(exc), "candidates": []}))
            self.stdout.flush()
            raise SystemExit(exc.returncode) from None
        if not as_json:
            self.stdout.write(
                f"queued run {run.pk}: {run.model_profile}, {run.count} x {run.width}x{run.height}, "
                f"seeds {run.base_seed}..{run.seeds[-1]}"
            )
        if options["wait"]:
            run = self._wait(run)
        if as_json:
            self.stdout.write(json.dumps(run_summary(run)))
        elif run.is_finished:
            self.stdout.write(f"run {run.pk} {run.status}" + (f": {run.error}" if run.error else ""))
        if options["wait"] and run.status != GenerationRun.Status.SUCCEEDED:
            raise SystemExit(EXIT_NOT_SUCCEEDED)

    def _submit(self, options: dict[str, Any]) -> GenerationRun:
        article = Article.objects.filter(slug=options["slug"]).first()
        if article is None:
            raise CommandError(f"no article with slug {options['slug']!r}", returncode=EXIT_INVALID)
        try:
            return run_submit(
                article=article,
                prompt=options["prompt"],
                model=options["model"],
                seed=options["seed"],
                count=options["count"],
                width=options["width"],
                height=options["height"],
                steps=options["steps"],
                guidance=options["guidance"],
                requested_via=RequestedVia.CLI,
            )
        except ValidationError as exc:
            lines = [f"--{field}: {msg}" for field, msgs in exc.message_dict.items() for msg in msgs]
            raise CommandError(
                "invalid arguments, nothing queued:\n" + "\n".join(lines), returncode=EXIT_INVALID
            ) from None

    def _wait(self, run: GenerationRun) -> GenerationRun:
        from tqdm import tqdm

        bar = tqdm(total=run.steps, desc=f"run {run.pk}", unit="step", file=self.stderr._out, leave=True)
        hinted = False
        waiting_since = time.monotonic()
        try:
            while not run.is_finished:
                time.sleep(0.2)
                run.refresh_from_db()
                if (bar.n, bar.postfix) != (run.progress_step, run.status):
                    bar.n = run.progress_step
                    bar.set_postfix_str(run.status)
                if run.status == GenerationRun.Status.QUEUED and not hinted and time.monotonic() - waiting_since > 15:
                    hinted = True
                    bar.write("still queued: is a worker running? (`make run` starts one, or `manage.py qcluster`)")
        except KeyboardInterrupt:
            bar.close()
            raise CommandError(f"stopped waiting; run {run.pk} goes on in the worker") from None
        bar.close()
        return run
