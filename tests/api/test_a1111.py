"""The AUTOMATIC1111 API (/sdapi/v1/...): what Open WebUI and SillyTavern send, with HTTP Basic
auth whose password is an API token; the worker tests use a real qcluster and a live server."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
import pytest
import requests
from django.test import Client
from django_q.models import OrmQ
from PIL import Image

from api.models import ApiToken
from generation.models import GenerationRun
from tests.api.conftest import api_user
from tests.conftest import wait_finished, wait_for

ENDPOINTS = [
    ("get", "/sdapi/v1/options"),
    ("post", "/sdapi/v1/options"),
    ("get", "/sdapi/v1/sd-models"),
    ("get", "/sdapi/v1/samplers"),
    ("get", "/sdapi/v1/upscalers"),
    ("get", "/sdapi/v1/progress"),
    ("post", "/sdapi/v1/interrupt"),
    ("post", "/sdapi/v1/txt2img"),
]
# The smallest real generation: the tiny SD model at 64x64 in 2 steps.
TINY = {"width": 64, "height": 64, "steps": 2}


def basic(token: str, user: str = "openwebui") -> str:
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


def call(method: str, path: str, body: Any = None, auth: str | None = None) -> Any:
    headers = {"Authorization": auth} if auth else {}
    if method == "get":
        return Client().get(path, headers=headers)
    data = body if isinstance(body, str) else json.dumps(body or {})
    return Client().post(path, data, content_type="application/json", headers=headers)


def assert_a1111_error(response: Any, status: int, field: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) >= {"error", "detail", "body", "errors"}, body
    assert field in body["detail"] and field in body["errors"], body
    return body


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("auth", [None, basic("not-a-token"), "Bearer not-a-token", "Basic !!!"])
def test_every_endpoint_without_a_valid_token_is_a_401_in_a1111_shape(method: str, path: str, auth: str) -> None:
    response = call(method, path, {"prompt": "a lighthouse"}, auth=auth)
    body = assert_a1111_error(response, 401, "Authorization")
    assert body["error"] == "Unauthorized" and response["WWW-Authenticate"].startswith("Basic")
    assert not GenerationRun.objects.exists()


def options_from(address: str, auth: str) -> Any:
    return Client().get("/sdapi/v1/options", headers={"Authorization": auth}, REMOTE_ADDR=address)


@pytest.mark.django_db
def test_basic_auth_failures_lock_the_pair_but_not_the_owner_from_their_own_address(token: str, settings) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):  # a stranger guesses tokens under the owner's name
        assert options_from("203.0.113.7", basic("guessed-token", "owner")).status_code == 401
    assert_a1111_error(options_from("203.0.113.7", basic("guessed-token", "owner")), 429, "Authorization")
    locked = assert_a1111_error(options_from("203.0.113.7", basic(token, "owner")), 429, "Authorization")
    assert "Too many failed" in locked["detail"]
    assert options_from("198.51.100.9", basic(token, "owner")).status_code == 200


@pytest.mark.django_db
def test_basic_auth_failures_lock_the_address_alone_after_its_higher_limit(token: str, settings) -> None:
    for n in range(settings.HOFFDESK_LOGIN_ADDRESS_FAILURE_LIMIT - 1):
        assert options_from("203.0.113.8", basic("guessed-token", f"user{n}")).status_code == 401
    assert options_from("203.0.113.8", basic(token, "owner")).status_code == 200  # below the address limit
    assert options_from("203.0.113.8", basic("guessed-token", "last")).status_code == 429  # reaches it
    assert_a1111_error(options_from("203.0.113.8", basic(token, "owner")), 429, "Authorization")
    assert options_from("198.51.100.9", basic(token, "owner")).status_code == 200


@pytest.mark.django_db
def test_sd_models_does_not_show_the_servers_models_folder(token: str, settings) -> None:
    response = call("get", "/sdapi/v1/sd-models", auth=basic(token))
    assert response.status_code == 200
    listed = {model["title"]: model for model in response.json()}
    assert listed["tiny-sd"]["filename"] == "tiny-sd"
    assert str(settings.HOFFDESK_MODELS_DIR) not in response.content.decode()


@pytest.mark.django_db
def test_a_bearer_token_works_too_and_a_token_of_a_looker_is_a_403(token: str) -> None:
    assert call("get", "/sdapi/v1/options", auth=f"Bearer {token}").status_code == 200
    _row, looker = ApiToken.issue(user=api_user("looker"))
    assert_a1111_error(call("get", "/sdapi/v1/options", auth=basic(looker)), 403, "Authorization")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": 7}, "prompt"),
        ({"steps": 0}, "steps"),
        ({"steps": "many"}, "steps"),
        ({"width": 100}, "width"),
        ({"height": 4096}, "height"),
        ({"cfg_scale": 99}, "cfg_scale"),
        ({"cfg_scale": "high"}, "cfg_scale"),
        ({"seed": -5}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"subseed": "x", "subseed_strength": 0.3}, "subseed"),
        ({"subseed_strength": 0.9}, "subseed_strength"),
        ({"subseed_strength": 0.01}, "subseed_strength"),
        ({"batch_size": 4, "n_iter": 3}, "batch_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"n_iter": 0}, "n_iter"),
        ({"sampler_name": 5}, "sampler_name"),
        ({"override_settings": "tiny-sd"}, "override_settings"),
        ({"override_settings": {"sd_model_checkpoint": "sd-9000"}}, "override_settings.sd_model_checkpoint"),
        ({"enable_hr": "yes"}, "enable_hr"),
        ({"enable_hr": True, "hr_scale": 9}, "hr_scale"),
        ({"enable_hr": True, "hr_scale": "big"}, "hr_scale"),
        ({"enable_hr": True, "hr_upscaler": "Latent"}, "hr_upscaler"),  # no latent upscaling here
        ({"enable_hr": True, "hr_upscaler": 4}, "hr_upscaler"),
        ({"enable_hr": True, "hr_second_pass_steps": -1}, "hr_second_pass_steps"),
        ({"enable_hr": True, "hr_second_pass_steps": 1_000_000}, "hr_second_pass_steps"),
        ({"enable_hr": True, "denoising_strength": 0}, "denoising_strength"),
        ({"enable_hr": True, "denoising_strength": 1.5}, "denoising_strength"),
        ({"enable_hr": True, "hr_resize_x": -5}, "hr_resize_x"),
        ({"enable_hr": True, "hr_resize_y": 100_000}, "hr_scale"),  # the scale it derives is out of range
    ],
)
def test_an_invalid_txt2img_field_is_a_422_naming_it_and_queues_nothing(
    token: str, fields: dict, named: str, settings
) -> None:
    settings.HOFFDESK_IMAGE_API_WAIT = 0  # a request wrongly accepted fails at once (504), not after the wait
    body = {"prompt": "a lighthouse", **TINY, **fields}
    response = call("post", "/sdapi/v1/txt2img", body, auth=basic(token))
    assert_a1111_error(response, 422, named)
    assert response.json()["body"] == body
    assert not GenerationRun.objects.exists() and not OrmQ.objects.exists()


def queued_run(token: str, fields: dict[str, Any], settings: Any) -> GenerationRun:
    """txt2img with no worker and no wait: the 504 names the run it queued."""
    settings.HOFFDESK_IMAGE_API_WAIT = 0
    response = call("post", "/sdapi/v1/txt2img", {"prompt": "a lighthouse", **TINY, **fields}, auth=basic(token))
    assert response.status_code == 504, response.content
    return GenerationRun.objects.get(pk=response.json()["run_id"])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "hires"),
    [
        (
            {
                "enable_hr": True,
                "hr_scale": 2,
                "hr_upscaler": "Lanczos",
                "hr_second_pass_steps": 1,
                "denoising_strength": 0.4,
            },
            (2.0, "lanczos", 1, 0.4),
        ),
        # AUTOMATIC1111's defaults: x2, its "None" upscaler is a plain resize (Lanczos here), 0 second
        # pass steps means as many as the first pass, denoising strength 0.75.
        ({"enable_hr": True, "hr_upscaler": "None", "hr_second_pass_steps": 0}, (2.0, "lanczos", 2, 0.75)),
        ({"enable_hr": True, "hr_upscaler": ""}, (2.0, "lanczos", 2, 0.75)),
        ({"enable_hr": True, "hr_upscaler": None, "hr_scale": 1.5}, (1.5, "lanczos", 2, 0.75)),
        # A target size instead of a scale: the scale that reaches it (both given: covers both).
        ({"enable_hr": True, "hr_resize_x": 96, "hr_scale": 4}, (1.5, "lanczos", 2, 0.75)),
        ({"enable_hr": True, "hr_resize_y": 128}, (2.0, "lanczos", 2, 0.75)),
        ({"enable_hr": True, "hr_resize_x": 96, "hr_resize_y": 160}, (2.5, "lanczos", 2, 0.75)),
        # enable_hr false (or left out) ignores the hires fields, as AUTOMATIC1111 does.
        ({"enable_hr": False, "hr_scale": 9, "hr_upscaler": "Latent", "denoising_strength": 7}, None),
        ({"hr_scale": 2, "denoising_strength": 0.7, "hr_second_pass_steps": 3}, None),
    ],
)
def test_automatic1111s_hires_fields_map_onto_the_hires_pass(token: str, settings, fields, hires) -> None:  # type: ignore[no-untyped-def]
    run = queued_run(token, fields, settings)
    assert (run.width, run.height, run.steps) == (64, 64, 2)
    if hires is None:
        assert not run.has_hires and run.output_size == (64, 64) and run.progress_total == 2
    else:
        assert (run.hires_scale, run.hires_upscaler, run.hires_steps, run.hires_denoise) == hires
        assert run.progress_total == 2 + hires[2]


@pytest.mark.django_db
def test_hr_upscaler_names_an_upscaler_file_a_gpu_worker_reports(token: str, settings) -> None:
    from django.utils import timezone

    from generation.models import WorkerHeartbeat

    fields = {"enable_hr": True, "hr_upscaler": "4x-TinyESRGAN"}
    settings.HOFFDESK_IMAGE_API_WAIT = 0
    refused = call("post", "/sdapi/v1/txt2img", {"prompt": "a lighthouse", **TINY, **fields}, auth=basic(token))
    assert "4x-TinyESRGAN" in assert_a1111_error(refused, 422, "hr_upscaler")["detail"]
    WorkerHeartbeat.objects.create(
        worker="gpu-box:1", cluster=str(settings.Q_CLUSTER["name"]), seen_at=timezone.now(),
        profiles={"tiny-sd": "tiny-sd"}, upscalers=["4x-TinyESRGAN"],
    )  # fmt: skip
    assert queued_run(token, fields, settings).hires_upscaler == "4x-TinyESRGAN"


@pytest.mark.django_db
def test_upscalers_lists_lanczos_and_the_workers_files_in_automatic1111s_shape(token: str, settings) -> None:
    from django.utils import timezone

    from generation.models import WorkerHeartbeat

    shape = {"name", "model_name", "model_path", "model_url", "scale"}
    alone = call("get", "/sdapi/v1/upscalers", auth=basic(token))
    assert alone.status_code == 200, alone.content
    assert alone.json() == [{"name": "Lanczos", "model_name": None, "model_path": None, "model_url": None, "scale": 4}]

    WorkerHeartbeat.objects.create(
        worker="gpu-box:1", cluster=str(settings.Q_CLUSTER["name"]), seen_at=timezone.now(),
        profiles={"tiny-sd": "tiny-sd"}, upscalers=["RealESRGAN_x4plus", "2x-Tiny"],
    )  # fmt: skip
    response = call("get", "/sdapi/v1/upscalers", auth=basic(token))
    listed = response.json()
    assert [u["name"] for u in listed] == ["Lanczos", "2x-Tiny", "RealESRGAN_x4plus"]
    assert all(set(u) == shape and u["model_path"] is None for u in listed), listed
    assert {u["name"]: u["scale"] for u in listed} == {"Lanczos": 4, "2x-Tiny": 2, "RealESRGAN_x4plus": 4}
    assert str(settings.HOFFDESK_MODELS_DIR) not in response.content.decode()


@pytest.mark.django_db
def test_a_body_that_is_not_an_object_is_a_422(token: str) -> None:
    response = Client().post(
        "/sdapi/v1/txt2img", "[1]", content_type="application/json", HTTP_AUTHORIZATION=basic(token)
    )
    assert_a1111_error(response, 422, "body")
    assert not GenerationRun.objects.exists()


@pytest.mark.django_db
def test_the_queue_limit_is_a_429_with_a_clear_message(token: str, settings) -> None:
    settings.HOFFDESK_USER_QUEUE_LIMIT = 1
    user = ApiToken.objects.get().user
    GenerationRun.objects.create(
        requested_by=user, model_profile="tiny-sd", prompt="p", width=64, height=64, steps=2, guidance=1.0,
        base_seed=1, count=1,
    )  # fmt: skip
    response = call("post", "/sdapi/v1/txt2img", {"prompt": "a lighthouse", **TINY}, auth=basic(token))
    body = assert_a1111_error(response, 429, "request")
    assert "limit is 1 per person" in body["detail"]
    assert GenerationRun.objects.count() == 1 and not OrmQ.objects.exists()


@pytest.mark.django_db
def test_options_set_this_tokens_model_only(token: str) -> None:
    models = call("get", "/sdapi/v1/sd-models", auth=basic(token)).json()
    by_name = {m["model_name"]: m for m in models}
    assert {"title", "model_name", "hash", "filename"} <= set(by_name["tiny-sdxl"])
    options = call("get", "/sdapi/v1/options", auth=basic(token)).json()
    assert options["sd_model_checkpoint"] == "tiny-sd"  # the site default

    # Open WebUI posts back every option it read, with the model changed; a title with a hash works.
    title = f"tiny-sdxl [{by_name['tiny-sdxl']['hash']}]"
    posted = call("post", "/sdapi/v1/options", {**options, "sd_model_checkpoint": title}, auth=basic(token))
    assert posted.status_code == 200, posted.content
    assert call("get", "/sdapi/v1/options", auth=basic(token)).json()["sd_model_checkpoint"] == "tiny-sdxl"
    _row, other = ApiToken.issue(user=ApiToken.objects.get().user)
    assert call("get", "/sdapi/v1/options", auth=basic(other)).json()["sd_model_checkpoint"] == "tiny-sd"

    bad = call("post", "/sdapi/v1/options", {"sd_model_checkpoint": "sd-9000"}, auth=basic(token))
    assert_a1111_error(bad, 422, "sd_model_checkpoint")
    samplers = call("get", "/sdapi/v1/samplers", auth=basic(token)).json()
    assert "Euler" in [s["name"] for s in samplers]


@pytest.mark.django_db
def test_unknown_paths_and_wrong_methods_answer_json(token: str) -> None:
    assert_a1111_error(call("get", "/sdapi/v1/img2img", auth=basic(token)), 404, "path")
    wrong = call("get", "/sdapi/v1/txt2img", auth=basic(token))
    assert_a1111_error(wrong, 405, "method")
    assert wrong["Allow"] == "POST"


# --- with a real worker and a live server ----------------------------------------------------------


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())


@pytest.fixture
def sdapi(live_server, token: str):  # type: ignore[no-untyped-def]
    """A requests session as Open WebUI's AUTOMATIC1111 engine makes them: HTTP Basic user:TOKEN."""
    session = requests.Session()
    session.auth = ("openwebui", token)
    base = f"{live_server.url}/sdapi/v1"

    def request(method: str, path: str, **kwargs: Any) -> requests.Response:
        return session.request(method, f"{base}/{path}", **kwargs)

    return request


@pytest.mark.worker
@pytest.mark.slow
def test_open_webui_sequence_gives_images_with_seeds_and_the_same_seed_gives_the_same_bytes(
    sdapi, start_worker
) -> None:
    worker = start_worker()
    options = sdapi("GET", "options").json()
    models = sdapi("GET", "sd-models").json()
    assert "tiny-sd" in [m["title"] for m in models]
    assert sdapi("POST", "options", json={**options, "sd_model_checkpoint": "tiny-sd"}).ok

    request = {"prompt": "a lighthouse at dusk", "batch_size": 2, "negative_prompt": "blurry", "seed": 1234, **TINY}
    first = sdapi("POST", "txt2img", json=request, timeout=180)
    assert first.status_code == 200, (first.text, worker.output()[-3000:])
    body = first.json()
    images = [decode(b64) for b64 in body["images"]]
    assert [image.size for image in images] == [(64, 64), (64, 64)]
    info = json.loads(body["info"])
    assert (info["seed"], info["all_seeds"]) == (1234, [1234, 1235])
    assert info["sd_model_name"] == "tiny-sd" and info["prompt"] == "a lighthouse at dusk"
    assert "Seed: 1235" in info["infotexts"][1] and "Negative prompt: blurry" in info["infotexts"][0]
    assert body["parameters"] == request

    again = sdapi("POST", "txt2img", json=request, timeout=180).json()
    assert again["images"] == body["images"]

    run = GenerationRun.objects.order_by("id").first()
    assert run is not None and run.article is None and run.requested_via == "a1111"
    assert run.api_token == ApiToken.objects.get() and run.candidates.count() == 2


@pytest.mark.worker
@pytest.mark.slow
def test_subseed_strength_makes_a_near_variation_of_the_seed(sdapi, start_worker) -> None:
    start_worker()

    def image(**fields: Any) -> Image.Image:
        response = sdapi("POST", "txt2img", json={"prompt": "a lighthouse", **TINY, **fields}, timeout=180)
        assert response.status_code == 200, response.text
        return decode(response.json()["images"][0])

    plain = image(seed=1234)
    varied_response = sdapi(
        "POST", "txt2img", json={"prompt": "a lighthouse", **TINY, "seed": 1234, "subseed": 77, "subseed_strength": 0.3}
    ).json()
    varied = decode(varied_response["images"][0])
    other = image(seed=4321)
    info = json.loads(varied_response["info"])
    assert (info["seed"], info["subseed"], info["subseed_strength"]) == (1234, 77, 0.3)
    assert 0 < mean_difference(varied, plain) < mean_difference(other, plain)


@pytest.mark.worker
@pytest.mark.slow
def test_enable_hr_makes_the_hires_pass_and_info_carries_its_keys(sdapi, start_worker) -> None:
    worker = start_worker()
    hires = {"enable_hr": True, "hr_scale": 2, "hr_upscaler": "Lanczos", "hr_second_pass_steps": 1,
             "denoising_strength": 0.4}  # fmt: skip
    response = sdapi("POST", "txt2img", json={"prompt": "a lighthouse", "seed": 9, **TINY, **hires}, timeout=180)
    assert response.status_code == 200, (response.text, worker.output()[-3000:])
    body = response.json()
    assert decode(body["images"][0]).size == (128, 128)
    assert body["parameters"]["enable_hr"] is True
    info = json.loads(body["info"])
    assert (info["width"], info["height"], info["denoising_strength"]) == (64, 64, 0.4)  # the first pass's size
    extra = info["extra_generation_params"]
    assert (extra["Hires upscale"], extra["Hires steps"], extra["Hires upscaler"]) == (2, 1, "Lanczos")
    for key in ("Denoising strength: 0.4", "Hires upscale: 2", "Hires steps: 1", "Hires upscaler: Lanczos"):
        assert key in info["infotexts"][0], info["infotexts"][0]


@pytest.mark.worker
@pytest.mark.slow
def test_progress_interrupt_and_a_client_that_hangs_up(sdapi, start_worker, settings) -> None:
    worker = start_worker()
    # A client that gives up mid-wait: the run goes on and lands in the Inbox with its candidates.
    with pytest.raises(requests.exceptions.ReadTimeout):
        sdapi("POST", "txt2img", json={"prompt": "a lighthouse", "batch_size": 2, **TINY}, timeout=0.3)
    abandoned = GenerationRun.objects.get()
    assert wait_finished(abandoned, worker=worker).status == "succeeded"
    assert abandoned.article is None and abandoned.candidates.count() == 2

    # A long run: the wait runs out (504 naming the run), progress follows it, interrupt cancels it.
    settings.HOFFDESK_IMAGE_API_WAIT = 0.5
    long = sdapi("POST", "txt2img", json={"prompt": "a storm", "width": 64, "height": 64, "steps": 1000})
    assert long.status_code == 504 and long.json()["error"] == "TimeoutError"
    run = GenerationRun.objects.get(pk=long.json()["run_id"])
    seen: dict[str, Any] = {}

    def running_midway() -> bool:
        seen.update(sdapi("GET", "progress").json())
        return 0 < seen["progress"] < 1

    wait_for(running_midway, 120, "progress between 0 and 1", worker)
    assert seen["state"]["job"] == f"run {run.pk}" and seen["textinfo"].startswith(f"run {run.pk}: step")
    assert sdapi("POST", "interrupt").json() == {}
    assert wait_finished(run, worker=worker).status == "cancelled"
    assert sdapi("GET", "progress").json()["progress"] == 0


@pytest.mark.django_db
def test_a_bug_is_a_json_500_not_an_html_page(token: str, monkeypatch) -> None:
    def broken(token: ApiToken) -> dict:
        raise RuntimeError("boom")

    monkeypatch.setattr("api.a1111._options", broken)
    assert_a1111_error(call("get", "/sdapi/v1/options", auth=basic(token)), 500, "request")
