"""Issue 16's promise, at the level of the services and the worker's task: in demo mode (a fresh
install, no weights) the Magic Wand of every content type ends in a candidate the publish page
accepts, and "Make hero size" turns a small candidate into a publishable one with its seed kept.

The runs are made in this process by the worker's own task (``generation.tasks.run_generate``)
on the tiny stand-ins, at the presets' real sizes."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.conf import settings
from PIL import Image

from gallery.models import Article, Publication
from gallery.publishing import publication_request, publication_run
from gallery.wand import article_wand
from generation import tasks
from generation.engine.metadata import parse_a1111_parameters, read_png_text
from generation.models import Candidate, GenerationRun, RegenerateMode
from generation.services import run_regenerate, run_submit
from tests.gallery.test_publishing import empty_publish_folder, published_files  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("migration_data"), pytest.mark.slow]


def made(run: GenerationRun) -> GenerationRun:
    assert tasks.run_generate(run.pk) == "succeeded", GenerationRun.objects.get(pk=run.pk).error
    run.refresh_from_db()
    return run


def publish(candidate: Candidate, editor) -> Publication:  # type: ignore[no-untyped-def]
    assert candidate.approve(editor)
    publication = publication_request(candidate=candidate, by=editor, alt_text="A test hero", focal=(0.5, 0.5))
    assert publication_run(publication.pk) == "published", Publication.objects.get(pk=publication.pk).error
    publication.refresh_from_db()
    return publication


@pytest.mark.parametrize("content_type", ["technical", "tutorial", "personal", "quick_tip"])
def test_the_magic_wand_of_every_content_type_ends_in_a_published_hero(editor, content_type) -> None:
    article = Article.objects.create(slug=f"a-{content_type}", title="Heroes for all", content_type=content_type)
    # The preset's size and hires pass as they are; 2 steps keep the tiny FLUX at 1216x640 quick.
    run = made(article_wand(article=article, requested_by=editor, count=1, steps=2))

    assert run.is_stand_in, (run.model_profile, run.engine_profile, run.preset)  # demo mode: no weights here
    candidate = run.candidates.get()
    hero_w, hero_h = settings.HOFFDESK_HERO_SIZE
    assert candidate.width >= hero_w and candidate.height >= hero_h, (run.preset, candidate.width, candidate.height)
    if run.model_profile == "sdxl-turbo":  # the 512 class reaches hero size through the hires pass
        assert (run.width, run.height, run.hires_scale) == (912, 480, 1.4)
        assert (candidate.width, candidate.height) == (1272, 672)
    publication = publish(candidate, editor)
    hero = next(row for row in publication.renditions if row["name"] == "hero" and row["format"] == "jpeg")
    assert (hero["width"], hero["height"]) == (hero_w, hero_h)
    assert hero["key"] in published_files()


def test_a_hires_run_writes_automatic1111s_hires_keys_and_progress_counts_both_passes(editor, article) -> None:
    run = made(
        run_submit(
            article=article, model="sdxl-turbo", prompt="a lighthouse", width=256, height=256, steps=2, seed=7,
            count=1, hires_scale=1.5, hires_steps=2, hires_denoise=0.5, requested_by=editor,
        )
    )  # fmt: skip
    assert (run.progress_step, run.progress_total) == (4, 4)
    candidate = run.candidates.get()
    assert (candidate.width, candidate.height) == (384, 384) == run.output_size
    with candidate.image.open("rb") as fh:
        parameters = parse_a1111_parameters(read_png_text(fh.read())["parameters"])
    assert parameters["Hires upscale"] == "1.5" and parameters["Hires steps"] == "2"
    assert parameters["Hires upscaler"] == "Lanczos" and parameters["Denoising strength"] == "0.5"
    assert parameters["Size"] == "256x256" and parameters["Seed"] == "7"


def test_make_hero_size_turns_a_small_candidate_into_a_publishable_one_with_its_seed(editor, article) -> None:
    small = made(
        run_submit(
            article=article, model="sdxl-turbo", prompt="a lighthouse", width=512, height=512, count=1,
            hires_scale=0, requested_by=editor,
        )
    ).candidates.get()  # fmt: skip
    assert (small.width, small.height) == (512, 512)
    assert small.approve(editor)
    with pytest.raises(Exception, match="the hero needs at least 1200x630"):
        publication_request(candidate=small, by=editor, alt_text="x", focal=(0.5, 0.5))

    run = made(run_regenerate(source=small.run, mode=RegenerateMode.UPSCALE, candidate=small, requested_by=editor))
    assert run.parent_id == small.run_id and run.source_candidate_id == small.pk and run.count == 1
    assert run.progress_total == run.hires_steps  # the hires pass alone
    hero = run.candidates.get()
    assert hero.seed == small.seed and hero.width >= 1216 and hero.height >= 640
    with hero.image.open("rb") as fh:
        image = Image.open(io.BytesIO(fh.read()))
        assert image.size == (hero.width, hero.height)
    publish(hero, editor)


def test_bad_hires_fields_are_refused_naming_the_field_and_nothing_is_queued(editor, article) -> None:
    from django.core.exceptions import ValidationError

    cases: dict[str, dict[str, Any]] = {
        "hires_scale": {"hires_scale": 9},
        "hires_steps": {"hires_scale": 1.5, "hires_steps": 1000},
        "hires_denoise": {"hires_scale": 1.5, "hires_denoise": 0},
        "hires_upscaler": {"hires_scale": 1.5, "hires_upscaler": "4x-NoSuchModel"},
    }
    for field, extra in cases.items():
        with pytest.raises(ValidationError) as error:
            run_submit(article=article, model="sdxl-turbo", prompt="x", width=512, height=512, **extra)
        assert field in error.value.message_dict, (field, error.value.message_dict)
    with pytest.raises(ValidationError, match="the hires pass would make"):
        run_submit(article=article, model="sdxl-turbo", prompt="x", width=1024, height=1024, hires_scale=4)
    assert not GenerationRun.objects.exists()
