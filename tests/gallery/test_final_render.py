"""Draft runs and Final render: a draft is fewer steps with a cache on the transformer, labelled
"draft" on every tile; Final render on one of its candidates queues that candidate's seed and the
draft's prompt at full quality, no cache, as the draft's child. The Magic Wand makes drafts for a
preset with ``drafts_by_default``."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.urls import reverse
from PIL import Image

from gallery.models import Article
from gallery.wand import article_wand
from generation.drafts import DRAFT_CACHES
from generation.engine.metadata import read_recipe
from generation.models import Candidate, GenerationRun, RegenerateMode, StylePreset, candidate_storage
from generation.services import run_regenerate, run_submit
from tests.conftest import wait_finished
from tests.gallery.test_regenerate import read_form
from tests.gallery.test_review import make_run

FLUX_CACHE = DRAFT_CACHES["flux"]


@pytest.fixture
def flux_preset(db: None) -> StylePreset:
    """A FLUX preset whose full quality is 10 steps (so a draft's 5 are visibly fewer)."""
    return StylePreset.objects.create(
        name="Flux look", slug="flux-look", model_profile="tiny-flux", width=64, height=64, steps=10, guidance=3.5
    )


def with_candidates(run: GenerationRun) -> GenerationRun:
    """The run as the worker leaves it: succeeded, one PNG per seed."""
    for index, seed in enumerate(run.seeds):
        buffer = io.BytesIO()
        Image.new("RGB", (run.width, run.height), (index * 40, 90, 120)).save(buffer, format="PNG")
        data = buffer.getvalue()
        name = candidate_storage().save(f"runs/{run.pk:06d}/{index:02d}-seed{seed}.png", ContentFile(data))
        Candidate.objects.create(
            run=run, index=index, seed=seed, image=name, width=run.width, height=run.height,
            sha256=hashlib.sha256(data).hexdigest(),
        )  # fmt: skip
    GenerationRun.objects.filter(pk=run.pk).update(status=GenerationRun.Status.SUCCEEDED)
    run.refresh_from_db()
    return run


def a_draft(article: Article, preset: StylePreset) -> GenerationRun:
    return with_candidates(
        run_submit(article=article, preset=preset, prompt="a lighthouse", count=2, seed=300, draft=True)
    )


@pytest.mark.django_db
def test_a_draft_has_half_the_presets_steps_and_the_transformer_cache(article, flux_preset) -> None:
    run = run_submit(article=article, preset=flux_preset, prompt="a lighthouse", draft=True)
    assert run.draft and run.steps == 5 and run.draft_cache == FLUX_CACHE

    full = run_submit(article=article, preset=flux_preset, prompt="a lighthouse")
    assert not full.draft and full.steps == 10 and full.draft_cache == {}


@pytest.mark.django_db
def test_a_unet_draft_is_fewer_steps_only_and_records_no_cache(article) -> None:
    run = run_submit(article=article, model="tiny-sd", prompt="a lighthouse", width=64, height=64, draft=True)
    assert run.draft and run.steps == 4 and run.draft_cache == {}  # tiny-sd's 8 halved; SD has no cache


@pytest.mark.django_db
def test_draft_must_be_yes_or_no(article) -> None:
    with pytest.raises(ValidationError) as caught:
        run_submit(article=article, model="tiny-sd", prompt="a lighthouse", draft="perhaps")
    assert "draft" in caught.value.message_dict
    assert not GenerationRun.objects.exists()


@pytest.mark.django_db
def test_final_render_runs_the_candidates_seed_and_the_drafts_prompt_at_full_quality_as_its_child(
    article, flux_preset
) -> None:
    draft = a_draft(article, flux_preset)
    keeper = draft.candidates.get(index=1)

    final = run_regenerate(source=draft, mode=RegenerateMode.FINAL, candidate=keeper, steps=2, prompt="other")

    assert final.parent == draft and final.source_candidate == keeper
    assert final.regenerate_mode == RegenerateMode.FINAL and final.status == GenerationRun.Status.QUEUED
    assert (final.base_seed, final.count, final.seeds) == (301, 1, [301])
    assert (final.prompt, final.model_profile, final.width, final.height) == ("a lighthouse", "tiny-flux", 64, 64)
    assert final.steps == 10 and not final.draft and final.draft_cache == {}
    assert final.progress_total == 10  # a whole first pass, not an enlargement


@pytest.mark.django_db
def test_final_render_is_refused_on_a_run_that_is_not_a_draft_and_without_a_candidate(article, flux_preset) -> None:
    full = make_run(article)
    with pytest.raises(ValidationError) as caught:
        run_regenerate(source=full, mode=RegenerateMode.FINAL, candidate=full.candidates.first())
    assert "not a draft" in caught.value.message_dict["mode"][0]
    draft = a_draft(article, flux_preset)
    with pytest.raises(ValidationError) as caught:
        run_regenerate(source=draft, mode=RegenerateMode.FINAL)
    assert "mode" in caught.value.message_dict
    assert GenerationRun.objects.count() == 2


@pytest.mark.django_db
def test_the_form_offers_final_render_only_on_a_drafts_candidate_and_queues_it(
    editor_client, article, flux_preset, django_capture_on_commit_callbacks
) -> None:
    draft = a_draft(article, flux_preset)
    keeper = draft.candidates.get(index=0)
    url = reverse("gallery:candidate_regenerate", args=[keeper.pk])
    form = read_form(editor_client, url)
    assert "final" in form.radios["mode"]
    assert "final" not in read_form(editor_client, reverse("gallery:run_regenerate", args=[draft.pk])).radios["mode"]

    data = {**form.values, "mode": "final"}
    data.pop("csrfmiddlewaretoken", None)
    with django_capture_on_commit_callbacks(execute=True):
        response = editor_client.post(url, data)

    assert response.status_code == 302
    final = GenerationRun.objects.get(parent=draft)
    assert final.regenerate_mode == "final" and final.base_seed == keeper.seed and not final.draft


@pytest.mark.django_db
def test_every_tile_of_a_draft_says_draft_and_offers_final_render(editor_client, article, flux_preset) -> None:
    draft = a_draft(article, flux_preset)
    full = make_run(article, seed=900)
    page = editor_client.get(article.get_absolute_url()).content.decode()

    for candidate in draft.candidates.all():
        tile = page.split(f'id="candidate-{candidate.pk}"')[1].split("</figure>")[0]
        assert 'data-testid="draft-label"' in tile and "Final render" in tile
    for candidate in full.candidates.all():
        tile = page.split(f'id="candidate-{candidate.pk}"')[1].split("</figure>")[0]
        assert "draft-label" not in tile and "Final render" not in tile

    detail = editor_client.get(reverse("gallery:candidate_detail", args=[draft.candidates.get(index=0).pk]))
    assert b'data-testid="final-render"' in detail.content
    detail = editor_client.get(reverse("gallery:candidate_detail", args=[full.candidates.get(index=0).pk]))
    assert b'data-testid="final-render"' not in detail.content


@pytest.mark.django_db
def test_the_magic_wand_makes_drafts_when_the_preset_says_so(article, flux_preset) -> None:
    assert not article_wand(article=article, preset=flux_preset.slug).draft
    StylePreset.objects.filter(pk=flux_preset.pk).update(drafts_by_default=True)

    run = article_wand(article=article, preset=flux_preset.slug)
    assert run.draft and run.steps == 5 and run.draft_cache == FLUX_CACHE
    assert not article_wand(article=article, preset=flux_preset.slug, draft=False).draft  # asked for: wins


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_draft_then_final_render_through_the_worker(start_worker, article, flux_preset) -> None:
    worker = start_worker()
    draft = run_submit(article=article, preset=flux_preset, prompt="a lighthouse", count=2, seed=77, draft=True)
    wait_finished(draft, worker=worker)
    assert draft.status == GenerationRun.Status.SUCCEEDED, f"{draft.error}\n{worker.output()[-3000:]}"
    keeper = draft.candidates.get(index=1)
    with keeper.image.open("rb") as fh:
        drafted = read_recipe(fh.read())
    assert drafted["draft"] is True and drafted["draft_cache"] == FLUX_CACHE and drafted["steps"] == 5

    final = run_regenerate(source=draft, mode=RegenerateMode.FINAL, candidate=keeper)
    wait_finished(final, worker=worker)
    assert final.status == GenerationRun.Status.SUCCEEDED, f"{final.error}\n{worker.output()[-3000:]}"
    with final.candidates.get().image.open("rb") as fh:
        rendered = read_recipe(fh.read())
    assert (rendered["seed"], rendered["prompt"]) == (keeper.seed, drafted["prompt"])
    assert rendered["steps"] == 10 and "draft" not in rendered and "draft_cache" not in rendered
    assert final.parent_id == draft.pk and final.source_candidate_id == keeper.pk


@pytest.mark.django_db
def test_the_preset_admin_shows_and_saves_drafts_by_default(admin_client, flux_preset) -> None:
    listing = admin_client.get(reverse("admin:generation_stylepreset_changelist")).content.decode()
    assert "drafts_by_default" in listing  # a column and a filter
    change = admin_client.get(reverse("admin:generation_stylepreset_change", args=[flux_preset.pk]))
    assert b'name="drafts_by_default"' in change.content


@pytest.mark.django_db
def test_the_generate_form_makes_a_draft_when_ticked(editor_client, article) -> None:
    url = reverse("gallery:run_create", args=[article.slug])
    fields = {"model": "tiny-flux", "prompt": "a lighthouse", "count": "1", "width": "64", "height": "64"}
    assert editor_client.post(url, {**fields, "draft": "on"}).status_code == 302
    assert editor_client.post(url, fields).status_code == 302
    assert list(GenerationRun.objects.order_by("pk").values_list("draft", flat=True)) == [True, False]


@pytest.mark.django_db
def test_a_drafts_run_card_names_its_cache_and_its_regenerations_stay_drafts(
    editor_client, article, flux_preset
) -> None:
    draft = a_draft(article, flux_preset)
    page = editor_client.get(article.get_absolute_url()).content.decode()
    assert "FirstBlockCache cache (threshold 0.08)" in page.split('data-testid="run-draft"')[1].split("</p>")[0]

    exact = run_regenerate(source=draft, mode=RegenerateMode.EXACT)
    more = run_regenerate(source=draft, mode=RegenerateMode.MORE)
    assert (exact.draft, exact.steps, exact.draft_cache, exact.base_seed) == (True, 5, FLUX_CACHE, 300)
    assert more.draft and more.steps == 5


@pytest.mark.django_db
def test_final_render_of_a_variation_draft_keeps_the_candidates_own_variation_seed(article, flux_preset) -> None:
    draft = with_candidates(
        run_submit(
            article=article, preset=flux_preset, prompt="a lighthouse", count=2, seed=300, draft=True,
            variation_strength=0.2, variation_seed=5000,
        )
    )  # fmt: skip
    final = run_regenerate(source=draft, mode=RegenerateMode.FINAL, candidate=draft.candidates.get(index=1))
    assert (final.seeds, final.variation_seeds, final.variation_strength) == ([300], [5001], 0.2)
