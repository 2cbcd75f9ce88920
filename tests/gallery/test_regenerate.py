"""Regenerating from a run or a candidate: the form, each mode through the views, and the service."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django_q.models import OrmQ

from gallery.models import Article
from generation.models import Candidate, GenerationRun, RegenerateMode
from generation.profiles import get_profile
from generation.services import run_regenerate
from tests.gallery.test_review import make_run

pytestmark = pytest.mark.django_db

ALL_MODES = ["more", "compose", "exact", "seed", "variations", "upscale"]
RUN_MODES = ["more", "exact", "seed"]
# "Make hero size" enlarges one candidate on its own model: count and model are not choices there.
CHANGEABLE_MODES = [mode for mode in ALL_MODES if mode != "upscale"]


class _Form(HTMLParser):
    """The fields of the page's POST form as a browser would submit them, and its radio choices."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.radios: dict[str, list[str]] = {}
        self._textarea: str | None = None
        self._select: str | None = None
        self._first_option: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        name = a.get("name", "")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind == "radio":
                self.radios.setdefault(name, []).append(a.get("value", ""))
                if "checked" in a:
                    self.values[name] = a.get("value", "")
            elif kind == "checkbox":
                if "checked" in a:
                    self.values[name] = a.get("value", "on")
            elif kind not in ("submit", "button"):
                self.values[name] = a.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.values[name] = ""
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select:
            self._first_option.setdefault(self._select, a.get("value", ""))
            if "selected" in a:
                self.values[self._select] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None
        elif tag == "select" and self._select:
            self.values.setdefault(self._select, self._first_option.get(self._select, ""))
            self._select = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            # A browser drops one newline right after <textarea>.
            text = self.values[self._textarea] + data
            self.values[self._textarea] = text[1:] if text.startswith("\n") else text


def read_form(client, url: str) -> _Form:  # type: ignore[no-untyped-def]
    response = client.get(url)
    assert response.status_code == 200
    form = _Form()
    form.feed(response.content.decode())
    return form


def candidate_url(candidate: Candidate) -> str:
    return reverse("gallery:candidate_regenerate", args=[candidate.pk])


def run_url(run: GenerationRun) -> str:
    return reverse("gallery:run_regenerate", args=[run.pk])


@pytest.fixture
def source(article: Article) -> GenerationRun:
    """A succeeded tiny-sd run: 2 candidates, 64 px, 2 steps, guidance 1.0, seeds 10 and 11."""
    return make_run(article, count=2, seed=10)


@pytest.fixture
def second(source: GenerationRun) -> Candidate:
    """The candidate with seed 11: its seed differs from the run's base seed."""
    return source.candidates.get(index=1)


def submit(client, url: str, capture, mode: str, **changes: str):  # type: ignore[no-untyped-def]
    """Post the prefilled form with ``mode`` and the changed fields, running on-commit callbacks."""
    data = read_form(client, url).values
    data.pop("csrfmiddlewaretoken", None)
    data.update(mode=mode, **changes)
    with capture(execute=True):
        return client.post(url, data)


def new_run(source: GenerationRun) -> GenerationRun:
    return GenerationRun.objects.exclude(pk=source.pk).get()


def assert_queued_once(run: GenerationRun) -> None:
    assert OrmQ.objects.count() == 1
    task = OrmQ.objects.get().task
    assert task["name"] == f"run-{run.pk}" and tuple(task["args"]) == (run.pk,)


def assert_nothing_made(source: GenerationRun) -> None:
    assert list(GenerationRun.objects.values_list("pk", flat=True)) == [source.pk]
    assert OrmQ.objects.count() == 0


# The form -----------------------------------------------------------------------------------


def test_the_candidate_form_is_prefilled_with_the_runs_prompt_and_the_candidates_seed_and_offers_every_mode(
    editor_client, source, second
) -> None:
    form = read_form(editor_client, candidate_url(second))
    assert form.values["prompt"] == source.prompt == "a lighthouse 10"
    assert form.values["seed"] == "11"
    assert form.values["count"] == "2" and form.values["steps"] == "2"
    assert float(form.values["guidance"]) == 1.0
    assert form.values["model"] == "tiny-sd"
    assert sorted(form.radios["mode"]) == sorted(ALL_MODES)


def test_the_run_form_offers_only_the_three_run_modes(editor_client, source) -> None:
    form = read_form(editor_client, run_url(source))
    assert sorted(form.radios["mode"]) == sorted(RUN_MODES)
    assert form.values["prompt"] == source.prompt
    assert form.values["seed"] == str(source.base_seed)


# Each mode ----------------------------------------------------------------------------------


def test_more_keeps_the_recipe_and_draws_a_new_random_seed(
    editor_client, editor, source, second, django_capture_on_commit_callbacks
) -> None:
    response = submit(editor_client, candidate_url(second), django_capture_on_commit_callbacks, "more")
    run = new_run(source)
    assert response.status_code == 302
    assert response["Location"] == f"{source.article.get_absolute_url()}#run-{run.pk}"
    assert run.parent == source and run.regenerate_mode == RegenerateMode.MORE and run.requested_by == editor
    assert (run.prompt, run.steps, run.guidance, run.width, run.height, run.count, run.model_profile) == (
        source.prompt, source.steps, source.guidance, source.width, source.height, source.count, "tiny-sd",
    )  # fmt: skip
    assert run.base_seed not in (source.base_seed, second.seed)
    assert not run.is_variation and run.status == GenerationRun.Status.QUEUED
    assert_queued_once(run)


def test_more_twice_draws_different_seeds(editor_client, source, django_capture_on_commit_callbacks) -> None:
    submit(editor_client, run_url(source), django_capture_on_commit_callbacks, "more")
    submit(editor_client, run_url(source), django_capture_on_commit_callbacks, "more")
    seeds = set(GenerationRun.objects.exclude(pk=source.pk).values_list("base_seed", flat=True))
    assert len(seeds) == 2 and source.base_seed not in seeds


def test_compose_keeps_the_candidates_seed_with_the_edited_prompt(
    editor_client, source, second, django_capture_on_commit_callbacks
) -> None:
    response = submit(
        editor_client, candidate_url(second), django_capture_on_commit_callbacks, "compose",
        prompt="a lighthouse in a snowstorm", steps="3",
    )  # fmt: skip
    assert response.status_code == 302
    run = new_run(source)
    assert run.parent == source and run.regenerate_mode == RegenerateMode.COMPOSE
    assert run.base_seed == second.seed == 11
    assert run.prompt == "a lighthouse in a snowstorm" and run.steps == 3
    assert run.seeds == [11, 12]
    assert_queued_once(run)


def test_exact_repeats_seeds_count_and_recipe_even_when_the_form_was_edited(
    editor_client, source, second, django_capture_on_commit_callbacks
) -> None:
    response = submit(
        editor_client, candidate_url(second), django_capture_on_commit_callbacks, "exact",
        prompt="something else entirely", steps="5", guidance="4.5", seed="999",
    )  # fmt: skip
    assert response.status_code == 302
    run = new_run(source)
    assert run.parent == source and run.regenerate_mode == RegenerateMode.EXACT
    fields = ("base_seed", "count", "prompt", "negative_prompt", "steps", "guidance", "width", "height")
    assert {f: getattr(run, f) for f in fields} == {f: getattr(source, f) for f in fields}
    assert run.model_profile == source.model_profile and run.seeds == source.seeds
    assert_queued_once(run)


def test_seed_uses_the_typed_seed(editor_client, source, second, django_capture_on_commit_callbacks) -> None:
    response = submit(editor_client, candidate_url(second), django_capture_on_commit_callbacks, "seed", seed="4242")
    assert response.status_code == 302
    run = new_run(source)
    assert run.regenerate_mode == RegenerateMode.SEED and run.parent == source
    assert run.base_seed == 4242 and run.seeds == [4242, 4243]
    assert run.prompt == source.prompt
    assert_queued_once(run)


def test_seed_without_a_seed_is_400_with_the_error_by_the_seed_field(
    editor_client, source, second, django_capture_on_commit_callbacks
) -> None:
    response = submit(editor_client, candidate_url(second), django_capture_on_commit_callbacks, "seed", seed="")
    assert response.status_code == 400
    assert 'data-field="seed"' in response.content.decode()
    assert_nothing_made(source)


def test_variations_blend_the_candidates_seed_at_the_chosen_strength(
    editor_client, source, second, django_capture_on_commit_callbacks
) -> None:
    response = submit(
        editor_client, candidate_url(second), django_capture_on_commit_callbacks, "variations",
        variation_strength="0.2",
    )  # fmt: skip
    assert response.status_code == 302
    run = new_run(source)
    assert run.regenerate_mode == RegenerateMode.VARIATIONS and run.parent == source
    assert run.variation_strength == pytest.approx(0.2)
    assert run.variation_seed is not None and run.is_variation
    assert run.base_seed == second.seed and run.seeds == [second.seed] * run.count
    assert run.count == source.count and run.prompt == source.prompt
    assert_queued_once(run)


@pytest.mark.parametrize("strength", ["0.7", "0.01", "abc"])
def test_a_variation_strength_out_of_range_or_not_a_number_is_400_and_queues_nothing(
    editor_client, source, second, django_capture_on_commit_callbacks, strength
) -> None:
    response = submit(
        editor_client, candidate_url(second), django_capture_on_commit_callbacks, "variations",
        variation_strength=strength,
    )  # fmt: skip
    assert response.status_code == 400
    content = response.content.decode()
    assert 'data-field="variation_strength"' in content
    assert "variation" in content.split('data-field="variation_strength"', 1)[1][:300].lower()
    assert_nothing_made(source)


@pytest.mark.parametrize("mode", CHANGEABLE_MODES)
def test_count_and_model_can_change_in_every_mode_but_make_hero_size(
    editor_client, source, second, django_capture_on_commit_callbacks, mode
) -> None:
    extra = {"seed": "77"} if mode == "seed" else {"variation_strength": "0.25"} if mode == "variations" else {}
    response = submit(
        editor_client, candidate_url(second), django_capture_on_commit_callbacks, mode,
        count="3", model="tiny-sdxl", **extra,
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[-2000:]
    run = new_run(source)
    assert (run.count, run.model_profile, run.regenerate_mode, run.parent) == (3, "tiny-sdxl", mode, source)
    assert len(run.seeds) == 3
    assert_queued_once(run)


def test_make_hero_size_from_the_form_enlarges_that_one_candidate_on_its_own_model(
    editor_client, source, second, django_capture_on_commit_callbacks
) -> None:
    Candidate.objects.filter(pk=second.pk).update(width=512, height=512)  # a 512-class candidate
    response = submit(
        editor_client,
        candidate_url(second),
        django_capture_on_commit_callbacks,
        "upscale",
        count="3",
        model="tiny-sdxl",
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    run = new_run(source)
    assert (run.count, run.model_profile, run.regenerate_mode, run.source_candidate) == (
        1,
        "tiny-sd",
        "upscale",
        second,
    )
    assert run.base_seed == second.seed and (run.width, run.height) == (512, 512)
    assert run.output_size[0] >= 1216 and run.output_size[1] >= 640
    assert_queued_once(run)


def test_make_hero_size_refuses_an_image_one_hires_pass_cannot_take_to_hero_size(
    editor_client, source, second, django_capture_on_commit_callbacks
) -> None:
    response = submit(editor_client, candidate_url(second), django_capture_on_commit_callbacks, "upscale")
    assert response.status_code == 400
    assert "even x4 stays below the hero&#x27;s 1216x640" in response.content.decode()
    assert_nothing_made(source)


@pytest.mark.parametrize("mode", RUN_MODES)
def test_the_run_form_regenerates_in_each_run_mode(
    editor_client, source, django_capture_on_commit_callbacks, mode
) -> None:
    extra = {"seed": "5150"} if mode == "seed" else {}
    response = submit(editor_client, run_url(source), django_capture_on_commit_callbacks, mode, **extra)
    assert response.status_code == 302
    run = new_run(source)
    assert run.parent == source and run.regenerate_mode == mode
    if mode == "exact":
        assert run.base_seed == source.base_seed
    elif mode == "seed":
        assert run.base_seed == 5150
    assert_queued_once(run)


@pytest.mark.parametrize("mode", ["compose", "variations"])
def test_the_run_form_refuses_the_candidate_only_modes(
    editor_client, source, django_capture_on_commit_callbacks, mode
) -> None:
    response = submit(
        editor_client, run_url(source), django_capture_on_commit_callbacks, mode, variation_strength="0.2"
    )
    assert response.status_code == 400
    assert 'data-field="mode"' in response.content.decode()
    assert_nothing_made(source)


def test_someone_in_no_group_gets_403_and_makes_nothing(client, onlooker, source, second) -> None:
    client.force_login(onlooker)
    for url in (candidate_url(second), run_url(source)):
        assert client.get(url).status_code == 403
        assert client.post(url, {"mode": "more", "count": "2"}).status_code == 403
    assert_nothing_made(source)


def test_an_anonymous_visitor_is_sent_to_log_in(client, source) -> None:
    response = client.get(run_url(source))
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert_nothing_made(source)


# The service --------------------------------------------------------------------------------


def test_the_service_links_the_new_run_and_queues_it_once(
    source, second, editor, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run = run_regenerate(source=source, mode="compose", candidate=second, requested_by=editor, prompt="a dune")
    run.refresh_from_db()
    assert (run.parent, run.regenerate_mode, run.base_seed, run.prompt) == (source, "compose", 11, "a dune")
    assert run.regenerate_label == "Keep this composition"
    assert (run.steps, run.guidance, run.width, run.height, run.count) == (2, 1.0, 64, 64, 2)
    assert_queued_once(run)


def test_the_service_exact_rerun_of_a_variations_run_keeps_its_variation(
    source, second, django_capture_on_commit_callbacks
) -> None:
    variations = run_regenerate(source=source, mode="variations", candidate=second, variation_strength="0.3")
    assert variations.seeds == [11, 11] and variations.variation_strength == pytest.approx(0.3)
    again = run_regenerate(source=variations, mode="exact", prompt="ignored", steps=9)
    assert again.parent == variations
    fields = ("base_seed", "count", "prompt", "steps", "guidance", "width", "height", "variation_seed")
    assert {f: getattr(again, f) for f in fields} == {f: getattr(variations, f) for f in fields}
    assert again.variation_strength == pytest.approx(0.3)
    assert again.variation_seeds == variations.variation_seeds


def test_the_service_seed_mode_without_a_seed_names_the_seed(source) -> None:
    with pytest.raises(ValidationError) as caught:
        run_regenerate(source=source, mode="seed", seed="")
    assert set(caught.value.message_dict) == {"seed"}
    assert_nothing_made(source)


@pytest.mark.parametrize("strength", [None, "0.7", "0.01", "abc"])
def test_the_service_refuses_a_missing_or_bad_variation_strength(source, second, strength) -> None:
    with pytest.raises(ValidationError) as caught:
        run_regenerate(source=source, mode="variations", candidate=second, variation_strength=strength)
    assert "variation_strength" in caught.value.message_dict
    assert_nothing_made(source)


@pytest.mark.parametrize("mode", ["compose", "variations"])
def test_the_service_candidate_only_modes_need_a_candidate(source, mode) -> None:
    with pytest.raises(ValidationError) as caught:
        run_regenerate(source=source, mode=mode, variation_strength="0.2")
    assert "mode" in caught.value.message_dict
    assert_nothing_made(source)


def test_the_service_refuses_a_candidate_of_another_run_and_an_unknown_mode(source, article) -> None:
    other = make_run(article, count=1, seed=50).candidates.get()
    with pytest.raises(ValidationError) as caught:
        run_regenerate(source=source, mode="compose", candidate=other)
    assert "candidate" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        run_regenerate(source=source, mode="sideways")
    assert "mode" in caught.value.message_dict
    assert GenerationRun.objects.count() == 2 and OrmQ.objects.count() == 0


def test_the_service_gives_another_model_its_own_size_and_keeps_the_size_for_the_same_model(source) -> None:
    other = run_regenerate(source=source, mode="more", model="tiny-sdxl", count=1)
    profile = get_profile("tiny-sdxl")
    assert (other.model_profile, other.count) == ("tiny-sdxl", 1)
    assert (other.width, other.height) == (profile.native_width, profile.native_height) != (64, 64)
    same = run_regenerate(source=source, mode="more", count="")
    assert (same.model_profile, same.count, same.width, same.height) == ("tiny-sd", 2, 64, 64)
