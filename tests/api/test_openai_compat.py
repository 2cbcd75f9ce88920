"""The OpenAI Images API (/v1/images/generations, /v1/models), proved with the official ``openai``
package as the client where it matters; the worker test uses a real qcluster and a live server."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import openai
import pytest
import requests
from django.core import signing
from django.test import Client
from django_q.models import OrmQ
from PIL import Image

from api import openai_images
from api.models import ApiToken
from generation.models import GenerationRun


def call(method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method == "get":
        return Client().get(path, headers=headers)
    data = body if isinstance(body, str) else json.dumps(body or {})
    return Client().post(path, data, content_type="application/json", headers=headers)


def assert_openai_error(response: Any, status: int, param: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert response["x-should-retry"] == "false"  # the client must not queue the same run again
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["param"] == param, error
    return dict(error)


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), [("post", "/v1/images/generations"), ("get", "/v1/models")])
@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_every_endpoint_without_a_valid_token_is_a_401_in_openai_shape(method: str, path: str, token: str) -> None:
    response = call(method, path, {"prompt": "a lighthouse"}, token=token)
    error = assert_openai_error(response, 401, None)
    assert error["code"] == "invalid_api_key" and "Authorization" in error["message"]
    assert not GenerationRun.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "status", "param"),
    [
        ({"prompt": ""}, 400, "prompt"),
        ({"prompt": None}, 400, "prompt"),
        ({"n": 0}, 400, "n"),
        ({"n": 9}, 400, "n"),
        ({"n": "2"}, 400, "n"),
        ({"size": "huge"}, 400, "size"),
        ({"size": "100x100"}, 400, "size"),  # not a multiple of 8
        ({"size": "4096x4096"}, 400, "size"),
        ({"response_format": "jpeg"}, 400, "response_format"),
        ({"output_format": "webp"}, 400, "output_format"),
        ({"stream": True}, 400, "stream"),
        ({"steps": "many"}, 400, "steps"),
        ({"steps": 0}, 400, "steps"),
        ({"colour": "blue"}, 400, "colour"),
        ({"model": "dall-e-3"}, 404, "model"),
    ],
)
def test_an_invalid_field_is_an_error_naming_it_and_queues_nothing(
    token: str, fields: dict, status: int, param: str
) -> None:
    body = {"prompt": "a lighthouse", "model": "tiny-sd", "size": "64x64", **fields}
    assert_openai_error(call("post", "/v1/images/generations", body, token), status, param)
    assert not GenerationRun.objects.exists() and not OrmQ.objects.exists()


@pytest.mark.django_db
def test_the_queue_limit_is_a_429_with_a_clear_message(token: str, settings) -> None:
    settings.HOFFDESK_USER_QUEUE_LIMIT = 1
    GenerationRun.objects.create(
        requested_by=ApiToken.objects.get().user, model_profile="tiny-sd", prompt="p", width=64, height=64, steps=2,
        guidance=1.0, base_seed=1, count=1,
    )  # fmt: skip
    response = call("post", "/v1/images/generations", {"prompt": "a lighthouse", "size": "64x64"}, token)
    error = assert_openai_error(response, 429, None)
    assert "the limit is 1 per person" in error["message"] and error["code"] == "rate_limit_exceeded"
    assert GenerationRun.objects.count() == 1 and not OrmQ.objects.exists()


@pytest.mark.django_db
def test_models_lists_the_profiles_and_other_paths_are_json_404s(token: str) -> None:
    listing = call("get", "/v1/models", token=token).json()
    assert listing["object"] == "list"
    assert {"id": "tiny-sd", "object": "model", "created": 0, "owned_by": "hoffdesk"} in listing["data"]
    assert_openai_error(call("get", "/v1/chat/completions", token=token), 404, None)
    assert_openai_error(call("get", "/v1/images/generations", token=token), 405, None)


@pytest.mark.django_db
def test_an_image_link_with_a_bad_or_expired_signature_serves_nothing(token: str, settings) -> None:
    assert_openai_error(call("get", "/v1/images/files/1:abc:def.png"), 404, None)
    old = signing.TimestampSigner(salt=openai_images.URL_SALT)
    old.timestamp = lambda: signing.b62_encode(1)  # type: ignore[method-assign]
    expired = call("get", f"/v1/images/files/{old.sign('1-1')}.png")
    assert assert_openai_error(expired, 403, None)["code"] == "expired"


@pytest.mark.worker
@pytest.mark.slow
def test_the_openai_client_gets_two_pngs_of_its_size_and_the_run_waits_in_the_inbox(
    live_server, start_worker, token
) -> None:
    worker = start_worker()
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=token, max_retries=0, timeout=180)

    result = client.images.generate(
        model="tiny-sd", prompt="a lighthouse at dusk", n=2, size="64x64", user="chat-42", extra_body={"steps": 2}
    )
    assert result.data is not None and len(result.data) == 2, worker.output()[-3000:]
    for item in result.data:
        assert item.b64_json is not None and item.revised_prompt == "a lighthouse at dusk"
        with Image.open(io.BytesIO(base64.b64decode(item.b64_json))) as image:
            assert (image.format, image.size) == ("PNG", (64, 64))

    run = GenerationRun.objects.get()
    assert run.article is None and run.requested_via == "openai" and run.candidates.count() == 2
    assert run.api_token == ApiToken.objects.get() and run.client_fields == {"user": "chat-42"}

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="wrong", max_retries=0).images.generate(prompt="x")
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(model="tiny-sd", prompt="a lighthouse", size="100x100")  # type: ignore[arg-type]
    assert bad.value.status_code == 400 and bad.value.param == "size"
    assert GenerationRun.objects.count() == 1

    # response_format=url: a signed link that needs no token.
    linked = client.images.generate(
        model="tiny-sd", prompt="a lighthouse", size="64x64", response_format="url", extra_body={"steps": 2}
    )
    assert linked.data is not None and linked.data[0].url is not None
    png = requests.get(linked.data[0].url, timeout=30)
    assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size == (64, 64)


@pytest.mark.django_db
def test_a_bug_is_a_json_500_not_an_html_page(token: str, monkeypatch) -> None:
    def broken() -> dict:
        raise RuntimeError("boom")

    monkeypatch.setattr("api.openai_images.all_profiles", broken)
    assert assert_openai_error(call("get", "/v1/models", token=token), 500, None)["type"] == "server_error"
