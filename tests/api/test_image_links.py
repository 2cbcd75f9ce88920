"""The OpenAI API's ``url`` answers: a signed link to a candidate's PNG that needs no token, but
only while the token that asked for it is still good (not revoked, its user active) and for a
limited time (``HOFFDESK_IMAGE_URL_SECONDS``, an hour by default like OpenAI's own links)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.core import signing
from django.test import Client, RequestFactory

from api import openai_images
from api.models import ApiToken
from generation.models import Candidate
from tests.api.conftest import api_user, seeded_candidate

pytestmark = pytest.mark.django_db


@pytest.fixture
def token_row(db: None) -> ApiToken:
    row, _value = ApiToken.issue(user=api_user("pipeline", "editors"), name="tests")
    return row


@pytest.fixture
def candidate(article: Any) -> Candidate:
    return seeded_candidate(article)


def link_path(candidate: Candidate, token: ApiToken) -> str:
    """The path of the link the OpenAI endpoint would answer with for this token."""
    url = openai_images.image_url(RequestFactory().get("/v1/images/generations"), candidate, token=token)
    return url.removeprefix("http://testserver")


def assert_refused(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == code, response.json()


def test_a_link_serves_the_png_while_its_token_is_good(candidate: Candidate, token_row: ApiToken) -> None:
    response = Client().get(link_path(candidate, token_row))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response.getvalue().startswith(b"\x89PNG")


def test_a_link_is_refused_once_its_token_is_revoked(candidate: Candidate, token_row: ApiToken) -> None:
    path = link_path(candidate, token_row)
    assert token_row.revoke()
    assert_refused(Client().get(path), 403, "token_revoked")


def test_a_link_is_refused_once_its_user_is_disabled(candidate: Candidate, token_row: ApiToken) -> None:
    path = link_path(candidate, token_row)
    token_row.user.is_active = False
    token_row.user.save(update_fields=["is_active"])
    assert_refused(Client().get(path), 403, "user_inactive")


def test_a_link_is_refused_once_its_token_is_deleted(candidate: Candidate, token_row: ApiToken) -> None:
    path = link_path(candidate, token_row)
    token_row.delete()
    assert_refused(Client().get(path), 403, "token_revoked")


def test_a_link_expires_after_the_configured_lifetime(
    candidate: Candidate, token_row: ApiToken, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.HOFFDESK_IMAGE_URL_SECONDS = 60
    with monkeypatch.context() as patch:
        signed_at = time.time() - 61
        patch.setattr(time, "time", lambda: signed_at)  # the module django.core.signing reads
        path = link_path(candidate, token_row)
    assert_refused(Client().get(path), 403, "expired")
    settings.HOFFDESK_IMAGE_URL_SECONDS = 120
    assert Client().get(path).status_code == 200


def test_the_default_lifetime_is_at_most_an_hour() -> None:
    from django.conf import settings

    assert 0 < settings.HOFFDESK_IMAGE_URL_SECONDS <= 3600


def test_a_link_signed_the_old_way_with_only_the_candidate_id_serves_nothing(candidate: Candidate) -> None:
    old = signing.TimestampSigner(salt="api.openai_images.url").sign(str(candidate.pk))
    assert Client().get(f"/v1/images/files/{old}.png").status_code == 404
