"""API fixtures: an editor's bearer token and a client that sends it."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from PIL import Image

from api.models import ApiToken
from gallery.models import Article
from generation.models import Candidate, GenerationRun, candidate_storage


class ApiClient:
    """Django's test client with a bearer token and JSON bodies. With ``on_commit`` (pytest-django's
    ``django_capture_on_commit_callbacks``) each POST's on-commit callbacks run as if its
    transaction had committed, so a queued run really puts a task on the ORM broker."""

    def __init__(self, token: str | None, on_commit: Any = None) -> None:
        self.client = Client()
        self.token = token
        self.on_commit = on_commit

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, headers=self._headers(), **kwargs)

    def post(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        body = kwargs.pop("raw", None)
        if body is None:
            import json

            body = "" if data is None else json.dumps(data)
        if self.on_commit is None:
            return self.client.post(path, body, content_type="application/json", headers=self._headers(), **kwargs)
        with self.on_commit(execute=True):
            return self.client.post(path, body, content_type="application/json", headers=self._headers(), **kwargs)


@pytest.fixture
def token(db: None) -> str:
    """A bearer token of an editor."""
    _row, value = ApiToken.issue(user=api_user("pipeline", "editors"), name="tests")
    return value


def api_user(username: str, *groups: str) -> Any:
    """A user for the API only: no password, so no slow password hashing in every test."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create(username=username)
    user.groups.set([Group.objects.get_or_create(name=name)[0] for name in groups])
    return user


@pytest.fixture
def api(token: str, django_capture_on_commit_callbacks: Any) -> ApiClient:
    return ApiClient(token, on_commit=django_capture_on_commit_callbacks)


def assert_error(response: Any, status: int, field: str) -> dict[str, Any]:
    """A JSON error with this status whose detail names ``field``."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body["detail"], str)
    assert field in body["detail"], body
    assert field in body["errors"] or field in ("path", "request"), body
    return body


def png_bytes(size: tuple[int, int] = (64, 64), colour: str = "indigo") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def seeded_candidate(article: Article, size: tuple[int, int] = (64, 64), seed: int = 7) -> Candidate:
    """A finished run with one candidate whose PNG is written here (no worker)."""
    run = GenerationRun.objects.create(
        article=article, model_profile="tiny-sd", prompt="A lighthouse", width=size[0], height=size[1], steps=2,
        guidance=1.0, base_seed=seed, count=1, status=GenerationRun.Status.SUCCEEDED,
    )  # fmt: skip
    png = png_bytes(size)
    name = candidate_storage().save(f"runs/{run.pk:06d}/00-seed{seed}.png", ContentFile(png))
    return Candidate.objects.create(
        run=run, index=0, seed=seed, image=name, width=size[0], height=size[1], sha256=hashlib.sha256(png).hexdigest()
    )
