"""Bad sizes, steps, counts, seeds and profiles: a clear message and nothing queued."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django_q.models import OrmQ

from gallery.models import Article
from generation.models import GenerationRun
from generation.profiles import MAX_SEED
from generation.services import run_submit
from tests.conftest import ROOT, database_url

pytestmark = pytest.mark.django_db

BAD_INPUT = [
    ({"width": 250}, "width", "multiple of 8"),
    ({"height": 8}, "height", "between 64 and 1024"),
    ({"width": "wide"}, "width", "whole number"),
    ({"model": "flux-dev-nf4", "width": 1200, "height": 630}, "height", "multiple of 16"),
    ({"steps": 0}, "steps", "between 1 and"),
    ({"steps": "many"}, "steps", "whole number"),
    ({"count": 0}, "count", "between 1 and 8"),
    ({"count": 9}, "count", "between 1 and 8"),
    ({"seed": -1}, "seed", "between 0 and 4294967295"),
    ({"seed": MAX_SEED + 1}, "seed", "between 0 and 4294967295"),
    ({"seed": "lucky"}, "seed", "whole number"),
    ({"seed": MAX_SEED, "count": 2}, "seed", "must not pass"),
    ({"guidance": "nan"}, "guidance", "finite"),
    ({"guidance": 99}, "guidance", "between 0 and"),
    ({"model": "dall-e"}, "model", "unknown model profile 'dall-e'"),
    ({"prompt": " ", "model": "tiny-sd"}, "prompt", "must not be empty"),
    # Every door's text goes through here, the image APIs' negative_prompt included.
    ({"negative_prompt": "x" * 1_000_000}, "negative_prompt", "at most 2000 characters"),
    ({"prompt": ["a", "list"]}, "prompt", "must be text"),
    # Checked before a random seed is drawn from it (once a ValueError: a server error).
    ({"count": 2**40}, "count", "between 1 and 8"),
    ({"count": 2**40, "variation_strength": 0.2}, "count", "between 1 and 8"),
]


def assert_nothing_queued() -> None:
    assert GenerationRun.objects.count() == 0
    assert OrmQ.objects.count() == 0


@pytest.mark.parametrize(("kwargs", "field", "message"), BAD_INPUT)
def test_run_submit_refuses_bad_input_naming_the_field(
    article, django_capture_on_commit_callbacks, kwargs, field, message
) -> None:
    kwargs = {"prompt": "a fox", "model": "tiny-sd", **kwargs}
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ValidationError) as caught:
        run_submit(article=article, **kwargs)
    assert message in " ".join(caught.value.message_dict[field])
    assert_nothing_queued()


def test_valid_input_queues_one_task_after_commit(article, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        run = run_submit(article=article, model="tiny-sd", seed=MAX_SEED - 3, count=4)
    assert len(callbacks) == 1
    assert OrmQ.objects.count() == 1
    assert run.seeds == [MAX_SEED - 3, MAX_SEED - 2, MAX_SEED - 1, MAX_SEED]
    assert (run.width, run.height, run.steps) == (512, 512, 8)


def test_seed_is_drawn_at_random_and_recorded_when_not_given(article) -> None:
    seeds = {run_submit(article=article, model="tiny-sd", count=8).base_seed for _ in range(5)}
    assert len(seeds) > 1
    assert all(0 <= s <= MAX_SEED - 7 for s in seeds)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "-5"], "--seed: seed must be between 0 and 4294967295"),
        (["--seed", "4294967296"], "--seed: seed must be between 0"),
        (["--seed", "abc"], "--seed: seed must be a whole number"),
        (["--width", "100", "--height", "100"], "--width: width must be a multiple of 8"),
        (["--steps", "5000"], "--steps: steps must be between 1 and 1000"),
        (["--count", "12"], "--count: count must be between 1 and 8"),
        (["--model", "midjourney"], "--model: unknown model profile"),
    ],
)
def test_generate_command_rejects_bad_arguments_and_queues_nothing(article, args, message) -> None:
    with pytest.raises(CommandError) as caught:
        call_command("generate", article.slug, "--model", "tiny-sd", *args)
    assert message in str(caught.value)
    assert caught.value.returncode == 2
    assert_nothing_queued()


def test_generate_command_json_reports_invalid_arguments_on_the_last_line_of_merged_output(transactional_db) -> None:
    Article.objects.create(slug="merged", title="Merged output")
    result = subprocess.run(
        [sys.executable, "manage.py", "generate", "merged", "--seed", "x", "--count", "0", "--json"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # 2>&1: the JSON must still come last
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["run"] is None and last["status"] == "invalid"
    assert "--seed: seed must be a whole number" in last["error"] and "--count" in last["error"]
    assert "error: invalid arguments" in result.stdout
    assert_nothing_queued()


def test_generate_command_for_an_unknown_article_says_so(db) -> None:
    with pytest.raises(CommandError, match="no article with slug 'nope'"):
        call_command("generate", "nope")
    assert_nothing_queued()


def test_generate_command_queues_and_prints_json_without_waiting(article) -> None:
    out = io.StringIO()
    call_command("generate", article.slug, "--model", "tiny-sd", "--seed", "7", "--count", "2", "--json", stdout=out)
    last = json.loads(out.getvalue().strip().splitlines()[-1])
    run = GenerationRun.objects.get()
    assert last == {"run": run.pk, "status": "queued", "error": None, "candidates": []}
    assert run.seeds == [7, 8]
