"""The Magic Wand, presets with real models on demo stand-ins, series looks, and the batch."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django_q.models import OrmQ

from gallery.models import Article, Series
from gallery.services import article_set_hero
from gallery.wand import article_wand
from generation.models import Candidate, GenerationRun, StylePreset
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def new_article(slug: str, content_type: str = "technical", series: str = "", **extra: str) -> Article:
    return Article.objects.create(
        slug=slug,
        title=extra.pop("title", f"The {slug} story"),
        summary=extra.pop("summary", "What happened when we tried it."),
        content_type=content_type,
        series=series,
        **extra,
    )


def assert_nothing_queued() -> None:
    assert GenerationRun.objects.count() == 0
    assert OrmQ.objects.count() == 0


def test_fresh_install_wand_on_a_technical_article_asks_for_flux_and_runs_on_the_tiny_flux_stand_in(
    article, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run = article_wand(article=article)
    assert (run.model_profile, run.engine_profile, run.is_stand_in) == ("flux-dev-nf4", "tiny-flux", True)
    assert run.preset is not None and run.preset.slug == "technical-deep-dive"
    assert article.title in run.prompt
    assert "photorealistic hardware" in run.prompt
    assert "slate, rose and indigo" in run.prompt  # the palette, through the hero template
    assert (run.width, run.height) == (1216, 640)  # a size the 1200x630 hero crop can use
    assert run.prompt_source == "template" and run.prompt_template is not None
    assert OrmQ.objects.count() == 1


def test_fresh_install_wand_on_a_tutorial_asks_for_sdxl_turbo_and_runs_on_tiny_sdxl() -> None:
    run = article_wand(article=new_article("howto", content_type="tutorial"))
    assert (run.model_profile, run.engine_profile) == ("sdxl-turbo", "tiny-sdxl")
    assert "diagrammatic" in run.prompt and "The howto story" in run.prompt


def test_the_run_card_says_stand_in_plainly(editor_client, article) -> None:
    article_wand(article=article)
    page = editor_client.get(article.get_absolute_url()).content.decode()
    assert "demo stand-in: runs on tiny-flux" in page


@pytest.mark.parametrize(
    ("style", "model", "words"),
    [("minimal", "sdxl-turbo", "negative space"), ("atmospheric", "flux-dev-nf4", "cinematic")],
)
def test_an_image_style_picks_its_own_preset(article, style, model, words) -> None:
    run = article_wand(article=article, style=style)
    assert run.preset is not None and run.preset.slug == style
    assert run.model_profile == model and words in run.prompt


def test_an_unknown_style_is_refused_naming_the_field_and_queues_nothing(article) -> None:
    with pytest.raises(ValidationError) as caught:
        article_wand(article=article, style="baroque")
    assert "auto, technical, atmospheric, minimal" in caught.value.message_dict["style"][0]
    assert_nothing_queued()


def test_outside_demo_mode_a_model_without_weights_is_refused_with_the_fetch_command(
    settings, article, editor_client
) -> None:
    settings.HOFFDESK_DEMO = "false"
    with pytest.raises(ValidationError) as caught:
        article_wand(article=article)
    assert "manage.py fetch_models flux-dev-nf4" in caught.value.message_dict["model"][0]
    assert_nothing_queued()

    response = editor_client.post(f"/articles/{article.slug}/wand/", {"style": "auto"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    assert "fetch_models flux-dev-nf4" in response.content.decode()
    assert response["HX-Retarget"] == f"#wand-message-{article.slug}"
    assert_nothing_queued()


def test_auto_demo_mode_ends_when_a_real_model_is_installed(settings, tmp_path: Path, article) -> None:
    settings.HOFFDESK_MODELS_DIR = tmp_path
    (tmp_path / "flux-dev-nf4").mkdir()
    (tmp_path / "flux-dev-nf4" / "model_index.json").write_text("{}")
    run = article_wand(article=article)
    assert (run.model_profile, run.engine_profile, run.is_stand_in) == ("flux-dev-nf4", "flux-dev-nf4", False)
    with pytest.raises(ValidationError) as caught:  # sdxl-turbo is not installed: no stand-in now
        article_wand(article=new_article("tips", content_type="quick_tip"))
    assert "fetch_models sdxl-turbo" in caught.value.message_dict["model"][0]


def test_the_wand_button_shows_the_run_card_at_once(editor_client, article) -> None:
    response = editor_client.post(f"/articles/{article.slug}/wand/", {"style": "technical"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    run = GenerationRun.objects.get()
    body = response.content.decode()
    assert f'id="run-{run.pk}"' in body and "Queued" in body
    listing = editor_client.get("/").content.decode()
    assert 'data-testid="wand-form"' in listing and "Atmospheric" in listing


def test_two_articles_of_one_series_get_the_same_seed_and_preset() -> None:
    first = article_wand(article=new_article("homelab-1", series="homelab"))
    second = article_wand(article=new_article("homelab-2", content_type="tutorial", series="homelab"))
    assert first.base_seed == second.base_seed
    assert first.preset_id == second.preset_id is not None
    other = article_wand(article=new_article("elsewhere"))
    assert other.base_seed != first.base_seed  # (a 1 in 4 billion chance of a false failure)


def test_the_first_approved_hero_of_a_series_sets_its_look(editor) -> None:
    one = new_article("field-notes-1", series="field notes")
    run = article_wand(article=one, style="minimal", count=2)
    hero = Candidate.objects.create(run=run, index=1, seed=run.base_seed + 1, image="x.png", width=64, height=64)
    hero.approve(by=editor)
    article_set_hero(article=one, candidate=hero, by=editor)
    series = Series.objects.get(name="field notes")
    assert series.preset is not None
    assert (series.seed, series.preset.slug, series.look_locked) == (hero.seed, "minimal", True)
    later = article_wand(article=new_article("field-notes-2", series="field notes"))
    assert later.preset is not None
    assert later.base_seed == hero.seed and later.preset.slug == "minimal"


def test_an_editor_changes_the_series_look(editor_client) -> None:
    article = new_article("s-1", series="deep dives")
    article_wand(article=article)
    preset = StylePreset.objects.get(slug="atmospheric")
    response = editor_client.post(f"/articles/{article.slug}/series/", {"seed": "1234", "preset": preset.pk})
    assert response.status_code == 302
    run = article_wand(article=new_article("s-2", series="deep dives"))
    assert run.base_seed == 1234 and run.preset == preset


def test_generate_heroes_queues_one_run_per_article_without_a_hero_and_nothing_the_second_time() -> None:
    for i in range(10):
        new_article(f"batch-{i}", content_type=["technical", "tutorial"][i % 2])
    out = io.StringIO()
    call_command("generate_heroes", "--missing", "--dry-run", stdout=out, stderr=io.StringIO())
    assert "10 would be queued" in out.getvalue()
    assert_nothing_queued()

    out = io.StringIO()
    call_command("generate_heroes", "--missing", stdout=out, stderr=io.StringIO())
    assert GenerationRun.objects.count() == 10
    assert set(GenerationRun.objects.values_list("article__slug", flat=True)) == {f"batch-{i}" for i in range(10)}
    assert "queued 10" in out.getvalue()

    out = io.StringIO()
    call_command("generate_heroes", "--missing", stdout=out, stderr=io.StringIO())
    assert GenerationRun.objects.count() == 10
    assert "queued 0" in out.getvalue()


def test_generate_heroes_limit_and_refusals(settings) -> None:
    for i in range(3):
        new_article(f"lim-{i}")
    call_command("generate_heroes", "--limit", "2", stdout=io.StringIO(), stderr=io.StringIO())
    assert GenerationRun.objects.count() == 2
    settings.HOFFDESK_DEMO = "false"
    err = io.StringIO()
    with pytest.raises(CommandError, match="every article was refused"):
        call_command("generate_heroes", stdout=io.StringIO(), stderr=err)
    assert "fetch_models flux-dev-nf4" in err.getvalue()
    assert GenerationRun.objects.count() == 2


def test_presets_export_then_import_round_trips_and_a_bad_file_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "presets.json"
    call_command("presets", "export", str(path))
    data = json.loads(path.read_text())
    assert {p["slug"] for p in data} >= {"technical-deep-dive", "tutorial", "auto", "minimal"}
    technical = next(p for p in data if p["slug"] == "technical-deep-dive")
    assert technical["model_profile"] == "flux-dev-nf4"

    technical["prompt_suffix"] = "macro photograph of circuit boards"
    data.append({"slug": "blueprint", "name": "Blueprint", "model_profile": "sdxl-turbo", "prompt_suffix": "blueprint"})
    path.write_text(json.dumps(data))
    out = io.StringIO()
    call_command("presets", "import", str(path), stdout=out)
    assert "1 created" in out.getvalue()
    assert StylePreset.objects.get(slug="technical-deep-dive").prompt_suffix == "macro photograph of circuit boards"

    bad = [
        {"slug": "tutorial", "name": "Tutorial", "prompt_suffix": "changed"},
        {"slug": "broken", "name": "Broken", "model_profile": "dall-e"},
    ]
    path.write_text(json.dumps(bad))
    err = io.StringIO()
    with pytest.raises(CommandError, match="no preset was changed"):
        call_command("presets", "import", str(path), stdout=io.StringIO(), stderr=err)
    assert "record 1: model_profile" in err.getvalue()
    assert StylePreset.objects.get(slug="tutorial").prompt_suffix != "changed"
    assert not StylePreset.objects.filter(slug="broken").exists()


def test_a_long_prompt_is_flagged_on_the_run_not_cut(article) -> None:
    long_prompt = " ".join(["a luminous rack of homelab servers glowing softly"] * 12)
    run = article_wand(article=article, style="minimal", prompt=long_prompt)
    assert run.prompt == long_prompt
    assert "CLIP text encoder reads 77" in run.prompt_warning
    short = article_wand(article=article, style="minimal", prompt="a server rack")
    assert short.prompt_warning == ""


def test_queue_limit_applies_to_the_wand(settings) -> None:
    settings.HOFFDESK_USER_QUEUE_LIMIT = 1
    user = make_user("busy", "editors")
    article_wand(article=new_article("q-1"), requested_by=user)
    with pytest.raises(ValidationError, match="limit is 1"):
        article_wand(article=new_article("q-2"), requested_by=user)
    assert GenerationRun.objects.count() == 1
