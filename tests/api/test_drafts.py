"""The JSON API's draft mode: ``draft`` on create, regenerate ``mode: final`` on a draft's
candidate, and a 400 naming the field for a request that cannot be one."""

from __future__ import annotations

import pytest
from django_q.models import OrmQ

from generation.drafts import DRAFT_CACHES
from generation.models import GenerationRun, RegenerateMode
from tests.api.conftest import assert_error, seeded_candidate

pytestmark = pytest.mark.django_db

FLUX = {"model": "tiny-flux", "width": 64, "height": 64, "steps": 6, "count": 2, "seed": 5, "prompt": "a fox"}


def test_a_draft_is_asked_for_and_answered_with_its_cache(api, article) -> None:
    response = api.post(f"/api/v1/articles/{article.slug}/runs", {**FLUX, "draft": True})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["draft"] is True and body["draft_cache"] == DRAFT_CACHES["flux"]
    assert body["steps"] == 6  # steps given explicitly win over the draft's default

    plain = api.post(f"/api/v1/articles/{article.slug}/runs", FLUX).json()
    assert plain["draft"] is False and plain["draft_cache"] == {}


def test_draft_must_be_a_json_boolean(api, article) -> None:
    assert_error(api.post(f"/api/v1/articles/{article.slug}/runs", {**FLUX, "draft": "yes"}), 400, "draft")
    assert not GenerationRun.objects.exists() and not OrmQ.objects.exists()


def test_final_render_of_a_drafts_candidate_is_its_child_at_full_quality(api, article) -> None:
    draft = api.post(f"/api/v1/articles/{article.slug}/runs", {**FLUX, "steps": None, "draft": True}).json()
    run = GenerationRun.objects.get(pk=draft["id"])
    candidate = run.candidates.create(index=1, seed=6, image="x.png", width=64, height=64, sha256="0" * 64)

    response = api.post(f"/api/v1/runs/{run.pk}/regenerate", {"mode": "final", "candidate": candidate.pk})

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["parent"], body["mode"], body["source_candidate"]) == (run.pk, RegenerateMode.FINAL, candidate.pk)
    assert (body["seed"], body["count"], body["prompt"]) == (6, 1, "a fox")
    assert body["draft"] is False and body["draft_cache"] == {}
    assert draft["steps"] == 4 and body["steps"] == 4  # tiny-flux: 4 full steps, and a draft never has fewer than 4


def test_final_render_of_a_run_that_is_not_a_draft_names_the_mode(api, article) -> None:
    candidate = seeded_candidate(article)
    response = api.post(f"/api/v1/runs/{candidate.run_id}/regenerate", {"mode": "final", "candidate": candidate.pk})
    assert "not a draft" in assert_error(response, 400, "mode")["detail"]
    assert GenerationRun.objects.count() == 1


def test_final_render_needs_a_candidate_and_takes_no_recipe_fields(api, article) -> None:
    draft = api.post(f"/api/v1/articles/{article.slug}/runs", {**FLUX, "draft": True}).json()
    url = f"/api/v1/runs/{draft['id']}/regenerate"
    assert_error(api.post(url, {"mode": "final"}), 400, "candidate")
    run = GenerationRun.objects.get(pk=draft["id"])
    candidate = run.candidates.create(index=0, seed=5, image="x.png", width=64, height=64, sha256="0" * 64)
    assert_error(api.post(url, {"mode": "final", "candidate": candidate.pk, "steps": 2}), 400, "steps")
    assert GenerationRun.objects.count() == 1
