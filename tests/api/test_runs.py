"""POST /api/v1/articles/{slug}/runs (the Magic Wand), GET /runs/{id}, cancel and regenerate.
An invalid request queues nothing: no run row and no django-q task."""

from __future__ import annotations

import pytest
from django_q.models import OrmQ

from generation.models import GenerationRun, RegenerateMode
from tests.api.conftest import assert_error, seeded_candidate

pytestmark = pytest.mark.django_db

SMALL = {"model": "tiny-sd", "width": 64, "height": 64, "steps": 2, "count": 2, "seed": 5}


def queued() -> tuple[int, int]:
    return GenerationRun.objects.count(), OrmQ.objects.count()


def test_the_magic_wand_queues_a_run_and_answers_202(api, article) -> None:
    response = api.post(f"/api/v1/articles/{article.slug}/runs", {})
    assert response.status_code == 202, response.content
    body = response.json()
    run = GenerationRun.objects.get()
    assert body["id"] == run.pk and body["status"] == "queued" and body["article"] == article.slug
    assert body["prompt"] == run.prompt and run.prompt_source == "template"
    assert body["progress"] == {"step": 0, "total": run.steps}
    assert body["candidates"] == [] and body["parent"] is None
    assert run.requested_by is not None and run.requested_by.username == "pipeline"
    assert queued() == (1, 1)  # one run, one task on the GPU queue


def test_a_typed_recipe_is_used_as_given(api, article) -> None:
    response = api.post(f"/api/v1/articles/{article.slug}/runs", {"prompt": "A red fox", **SMALL, "guidance": 3.5})
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["prompt"], body["model"], body["seed"], body["count"]) == ("A red fox", "tiny-sd", 5, 2)
    assert (body["width"], body["height"], body["steps"], body["guidance"]) == (64, 64, 2, 3.5)
    assert body["stand_in"] is False and body["engine_profile"] == "tiny-sd"


def test_a_preset_or_style_is_named_by_slug(api, article) -> None:
    response = api.post(f"/api/v1/articles/{article.slug}/runs", {"style": "minimal", **SMALL})
    assert response.status_code == 202, response.content
    assert GenerationRun.objects.values_list("preset__slug", flat=True).get() == "minimal"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"model": "no-such-model"}, "model"),
        ({"preset": "no-such-preset"}, "preset"),
        ({"style": "no-such-style"}, "style"),
        ({"width": 63}, "width"),
        ({"width": 100}, "width"),
        ({"height": 100000}, "height"),
        ({"steps": 0}, "steps"),
        ({"count": 0}, "count"),
        ({"count": 99}, "count"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**40}, "seed"),
        ({"guidance": -1}, "guidance"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({"negative_prompt": "x" * 1_000_000}, "negative_prompt"),
        ({"model": "m" * 100_000}, "model"),
        ({"count": 2**40}, "count"),  # once a 500: a random seed was drawn from it before it was checked
        ({"count": 2**63}, "count"),
        ({"count": 8, "width": 1024, "height": 1024, "steps": 1000}, "steps"),  # hours of GPU time
        ({"width": "wide"}, "width"),
        ({"steps": 2.5}, "steps"),
        ({"guidance": "strong"}, "guidance"),
        ({"seed": True}, "seed"),
        ({"prompt": 5}, "prompt"),
        ({"sampler": "euler"}, "sampler"),
    ],
)
def test_every_invalid_field_answers_400_naming_it_and_queues_nothing(api, article, payload, field) -> None:
    before = queued()
    valid = {"model": "tiny-sd", "width": 64, "height": 64}
    assert_error(api.post(f"/api/v1/articles/{article.slug}/runs", {**valid, **payload}), 400, field)
    assert queued() == before == (0, 0)


def test_an_unknown_article_answers_404_and_queues_nothing(api) -> None:
    assert_error(api.post("/api/v1/articles/nope/runs", {}), 404, "slug")
    assert queued() == (0, 0)


def test_the_queue_limit_answers_429_and_queues_nothing_more(api, article, settings) -> None:
    settings.HOFFDESK_USER_QUEUE_LIMIT = 1
    assert api.post(f"/api/v1/articles/{article.slug}/runs", SMALL).status_code == 202
    body = assert_error(api.post(f"/api/v1/articles/{article.slug}/runs", SMALL), 429, "request")
    assert "limit is 1" in body["detail"]
    assert queued() == (1, 1)


def test_get_run_shows_progress_candidates_and_image_urls(api, article) -> None:
    candidate = seeded_candidate(article)
    run = candidate.run
    GenerationRun.objects.filter(pk=run.pk).update(progress_step=2, progress_total=2, engine_profile="tiny-sd")
    body = api.get(f"/api/v1/runs/{run.pk}").json()
    assert body["status"] == "succeeded" and body["progress"] == {"step": 2, "total": 2}
    assert body["model"] == "tiny-sd" and body["seed"] == 7 and body["error"] == ""
    assert body["candidates"] == [
        {
            "id": candidate.pk,
            "seed": 7,
            "status": "pending",
            "image_url": f"http://testserver/api/v1/candidates/{candidate.pk}/image",
            "width": 64,
            "height": 64,
            "sha256": candidate.sha256,
        }
    ]


def test_an_unknown_run_answers_404(api) -> None:
    assert_error(api.get("/api/v1/runs/424242"), 404, "id")


def test_cancel_ends_a_queued_run_and_a_finished_one_answers_409(api, article) -> None:
    run_id = api.post(f"/api/v1/articles/{article.slug}/runs", SMALL).json()["id"]
    response = api.post(f"/api/v1/runs/{run_id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert_error(api.post(f"/api/v1/runs/{run_id}/cancel"), 409, "status")
    assert_error(api.post("/api/v1/runs/424242/cancel"), 404, "id")


@pytest.mark.parametrize(
    ("mode", "extra", "expected_mode"),
    [
        ("new_seeds", {}, RegenerateMode.MORE),
        ("same_seed", {"candidate": True, "prompt": "Now in blue"}, RegenerateMode.COMPOSE),
        ("exact", {}, RegenerateMode.EXACT),
        ("seed", {"seed": 1234}, RegenerateMode.SEED),
        ("variations", {"candidate": True, "strength": 0.2}, RegenerateMode.VARIATIONS),
    ],
)
def test_regenerate_queues_a_child_run_in_each_mode(api, article, mode, extra, expected_mode) -> None:
    candidate = seeded_candidate(article)
    payload = {"mode": mode, **extra}
    if payload.get("candidate"):
        payload["candidate"] = candidate.pk
    response = api.post(f"/api/v1/runs/{candidate.run_id}/regenerate", payload)
    assert response.status_code == 202, response.content
    body = response.json()
    new_run = GenerationRun.objects.get(pk=body["id"])
    assert body["parent"] == candidate.run_id and body["mode"] == expected_mode
    assert new_run.regenerate_mode == expected_mode
    if mode in ("same_seed", "variations", "exact"):
        assert new_run.base_seed == 7
    if mode == "seed":
        assert new_run.base_seed == 1234
    if mode == "variations":
        assert new_run.variation_strength == 0.2
    assert OrmQ.objects.count() == 1


def test_regenerate_may_change_the_recipe(api, article) -> None:
    candidate = seeded_candidate(article)
    payload = {"mode": "new_seeds", "prompt": "Fog", "count": 1, "steps": 3, "guidance": 2.0, "preset": "minimal"}
    body = api.post(f"/api/v1/runs/{candidate.run_id}/regenerate", payload).json()
    run = GenerationRun.objects.get(pk=body["id"])
    assert (run.prompt, run.count, run.steps, run.guidance) == ("Fog", 1, 3, 2.0)
    assert run.preset is not None and run.preset.slug == "minimal"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "mode"),
        ({"mode": "more"}, "mode"),
        ({"mode": "same_seed"}, "candidate"),
        ({"mode": "variations", "strength": 0.2}, "candidate"),
        ({"mode": "same_seed", "candidate": 999999}, "candidate"),
        ({"mode": "variations", "candidate": "mine", "strength": 0.3}, "candidate"),
        ({"mode": "variations", "candidate": "CANDIDATE"}, "strength"),
        ({"mode": "variations", "candidate": "CANDIDATE", "strength": 0.9}, "strength"),
        ({"mode": "seed"}, "seed"),
        ({"mode": "seed", "seed": -5}, "seed"),
        ({"mode": "new_seeds", "count": 0}, "count"),
        ({"mode": "new_seeds", "steps": 0}, "steps"),
        ({"mode": "new_seeds", "guidance": 99}, "guidance"),
        ({"mode": "new_seeds", "model": "nope"}, "model"),
        ({"mode": "new_seeds", "preset": "nope"}, "preset"),
        ({"mode": "new_seeds", "width": 64}, "width"),
    ],
)
def test_every_invalid_regenerate_field_answers_400_naming_it_and_queues_nothing(api, article, payload, field) -> None:
    candidate = seeded_candidate(article)
    if payload.get("candidate") == "CANDIDATE":
        payload = {**payload, "candidate": candidate.pk}
    assert_error(api.post(f"/api/v1/runs/{candidate.run_id}/regenerate", payload), 400, field)
    assert queued() == (1, 0)  # only the seeded run


def test_regenerate_with_a_candidate_of_another_run_answers_400(api, article) -> None:
    first, other = seeded_candidate(article, seed=1), seeded_candidate(article, seed=2)
    payload = {"mode": "same_seed", "candidate": other.pk}
    assert_error(api.post(f"/api/v1/runs/{first.run_id}/regenerate", payload), 400, "candidate")


def test_regenerate_of_an_unknown_run_answers_404(api) -> None:
    assert_error(api.post("/api/v1/runs/424242/regenerate", {"mode": "exact"}), 404, "id")


@pytest.mark.parametrize("mode", ["new_seeds", "variations"])
def test_regenerate_with_an_out_of_range_count_answers_400_naming_it(api, article, mode) -> None:
    candidate = seeded_candidate(article)
    before = queued()
    payload = {
        "mode": mode,
        "count": 2**40,
        **({"candidate": candidate.pk, "strength": 0.2} if mode == "variations" else {}),
    }
    assert_error(api.post(f"/api/v1/runs/{candidate.run_id}/regenerate", payload), 400, "count")
    assert queued() == before


# --- the hires pass and Make hero size (issue 16) ------------------------------------------------

HIRES = {"hires_scale": 2, "hires_upscaler": "lanczos", "hires_steps": 1, "hires_denoise": 0.4}


def test_a_run_with_a_hires_pass_reports_it_and_its_output_size(api, article) -> None:
    response = api.post(f"/api/v1/articles/{article.slug}/runs", {"prompt": "A red fox", **SMALL, **HIRES})
    assert response.status_code == 202, response.content
    body = response.json()
    run = GenerationRun.objects.get()
    assert (run.hires_scale, run.hires_upscaler, run.hires_steps, run.hires_denoise) == (2.0, "lanczos", 1, 0.4)
    assert {field: body[field] for field in HIRES} == {**HIRES, "hires_scale": 2.0}
    assert (body["width"], body["height"]) == (64, 64)  # the first pass
    assert (body["output_width"], body["output_height"]) == (128, 128) == run.output_size
    assert body["source_candidate"] is None
    assert body["progress"] == {"step": 0, "total": 2 + 1}  # both passes
    assert queued() == (1, 1)


def test_hires_scale_0_turns_the_presets_hires_pass_off(api) -> None:
    from gallery.models import Article

    tip = Article.objects.create(slug="a-quick-tip", title="A quick tip", content_type="quick_tip")
    with_preset = api.post(f"/api/v1/articles/{tip.slug}/runs", {"count": 1}).json()
    assert with_preset["model"] == "sdxl-turbo" and with_preset["hires_scale"] == 1.4, with_preset
    assert (with_preset["output_width"], with_preset["output_height"]) == (1272, 672)

    off = api.post(f"/api/v1/articles/{tip.slug}/runs", {"count": 1, "hires_scale": 0}).json()
    assert off["hires_scale"] is None and off["hires_steps"] is None and off["hires_denoise"] is None
    assert (off["output_width"], off["output_height"]) == (off["width"], off["height"]) == (912, 480)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"hires_scale": 9}, "hires_scale"),
        ({"hires_scale": 0.5}, "hires_scale"),
        ({"hires_scale": -1}, "hires_scale"),
        ({"hires_scale": "big"}, "hires_scale"),
        ({"width": 1024, "height": 1024, "hires_scale": 4}, "hires_scale"),  # past the hires pass's size limit
        ({"hires_scale": 2, "hires_steps": 0}, "hires_steps"),
        ({"hires_scale": 2, "hires_steps": 1_000_000}, "hires_steps"),
        ({"hires_scale": 2, "hires_steps": 1.5}, "hires_steps"),
        ({"hires_scale": 2, "hires_denoise": 0}, "hires_denoise"),
        ({"hires_scale": 2, "hires_denoise": 1.5}, "hires_denoise"),
        ({"hires_scale": 2, "hires_upscaler": "4x-NoSuchModel"}, "hires_upscaler"),
        ({"hires_scale": 2, "hires_upscaler": 4}, "hires_upscaler"),
        ({"hires_scale": 2, "hires_upscaler": "u" * 100_000}, "hires_upscaler"),
    ],
)
def test_every_invalid_hires_field_answers_400_naming_it_and_queues_nothing(api, article, payload, field) -> None:
    valid = {"model": "tiny-sd", "width": 64, "height": 64}
    error = assert_error(api.post(f"/api/v1/articles/{article.slug}/runs", {**valid, **payload}), 400, field)
    assert "Extra inputs" not in error["detail"]  # the field is known, its value refused
    assert queued() == (0, 0)


def test_every_regenerate_mode_of_the_service_has_an_api_name() -> None:
    from typing import get_args

    from api.routers.runs import MODES
    from api.schemas import REGENERATE_MODES

    assert set(MODES.values()) == set(RegenerateMode)
    assert set(get_args(REGENERATE_MODES)) == set(MODES)


def test_regenerate_upscale_makes_one_hero_size_candidate_from_a_small_one_with_its_seed(api, article) -> None:
    candidate = seeded_candidate(article, size=(512, 512), seed=42)
    payload = {"mode": "upscale", "candidate": candidate.pk}
    response = api.post(f"/api/v1/runs/{candidate.run_id}/regenerate", payload)
    assert response.status_code == 202, response.content
    body = response.json()
    run = GenerationRun.objects.get(pk=body["id"])
    assert body["mode"] == "upscale" == run.regenerate_mode and body["parent"] == candidate.run_id
    assert body["source_candidate"] == candidate.pk == run.source_candidate_id
    assert (body["seed"], body["count"], body["model"]) == (42, 1, "tiny-sd")
    assert (body["width"], body["height"]) == (512, 512) and body["hires_scale"] > 1
    assert body["output_width"] >= 1216 and body["output_height"] >= 640
    assert body["progress"]["total"] == body["hires_steps"]  # the hires pass alone
    assert OrmQ.objects.count() == 1

    chosen = {"mode": "upscale", "candidate": candidate.pk, "hires_scale": 3, "hires_steps": 2, "hires_denoise": 0.3}
    body = api.post(f"/api/v1/runs/{candidate.run_id}/regenerate", chosen).json()
    assert (body["hires_scale"], body["hires_steps"], body["hires_denoise"]) == (3.0, 2, 0.3)
    assert (body["output_width"], body["output_height"]) == (1536, 1536)


def test_regenerate_in_another_mode_may_add_a_hires_pass(api, article) -> None:
    candidate = seeded_candidate(article)
    payload = {"mode": "same_seed", "candidate": candidate.pk, "hires_scale": 2, "hires_steps": 1}
    body = api.post(f"/api/v1/runs/{candidate.run_id}/regenerate", payload).json()
    assert (body["hires_scale"], body["hires_steps"], body["output_width"], body["output_height"]) == (2.0, 1, 128, 128)
    assert body["source_candidate"] is None and body["seed"] == 7


@pytest.mark.parametrize(
    ("size", "payload", "field"),
    [
        ((64, 64), {}, "mode"),  # even x4 stays below the hero's size: the message says what to do
        ((512, 512), {"candidate": None}, "candidate"),
        ((512, 512), {"prompt": "Now in blue"}, "prompt"),  # upscale keeps the composition
        ((512, 512), {"count": 4}, "count"),
        ((512, 512), {"model": "tiny-sdxl"}, "model"),
        ((512, 512), {"strength": 0.2}, "strength"),
        ((512, 512), {"hires_scale": 9}, "hires_scale"),
        ((512, 512), {"hires_scale": 0}, "hires_scale"),
        ((512, 512), {"hires_denoise": 2.0}, "hires_denoise"),
        ((512, 512), {"hires_steps": 0}, "hires_steps"),
        ((512, 512), {"hires_upscaler": "4x-NoSuchModel"}, "hires_upscaler"),
    ],
)
def test_an_invalid_upscale_answers_400_naming_the_field_and_queues_nothing(api, article, size, payload, field) -> None:
    candidate = seeded_candidate(article, size=size)
    body = {"mode": "upscale", "candidate": candidate.pk, **payload}
    if body["candidate"] is None:
        del body["candidate"]
    error = assert_error(api.post(f"/api/v1/runs/{candidate.run_id}/regenerate", body), 400, field)
    assert "Extra inputs" not in error["detail"] and "Input should be 'new_seeds'" not in error["detail"]
    if field == "mode":
        assert "below the hero" in error["detail"], error
    assert queued() == (1, 0)  # only the seeded run


def test_get_run_reports_no_hires_pass_as_nulls_and_the_first_pass_size(api, article) -> None:
    candidate = seeded_candidate(article)
    body = api.get(f"/api/v1/runs/{candidate.run_id}").json()
    assert {f: body[f] for f in HIRES} == {"hires_scale": None, "hires_upscaler": "", "hires_steps": None,
                                            "hires_denoise": None}  # fmt: skip
    assert (body["output_width"], body["output_height"], body["source_candidate"]) == (64, 64, None)
