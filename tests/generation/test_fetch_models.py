"""``manage.py fetch_models``: tiny profiles are built, real ones downloaded or refused clearly."""

from __future__ import annotations

import io

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from generation.engine.loader import _quantization_config
from generation.profiles import get_profile


def test_tiny_profiles_are_built_locally(tmp_path, settings) -> None:
    settings.HOFFDESK_MODELS_DIR = tmp_path
    out = io.StringIO()
    call_command("fetch_models", "tiny-flux", stdout=out)
    assert "built locally" in out.getvalue()
    assert (tmp_path / "tiny-flux" / "model_index.json").exists()


def test_unreachable_hub_says_why_and_fails(tmp_path, settings, monkeypatch) -> None:
    settings.HOFFDESK_MODELS_DIR = tmp_path
    # The hub is unreachable on our machines anyway; point at a closed local port so the test
    # cannot reach the network wherever it runs.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")
    err = io.StringIO()
    with pytest.raises(CommandError, match="not fetched: sdxl-turbo"):
        call_command("fetch_models", "sdxl-turbo", stderr=err, stdout=io.StringIO())
    assert "not reachable" in err.getvalue() or "download failed" in err.getvalue()
    assert not (tmp_path / "sdxl-turbo" / "model_index.json").exists()


def test_unknown_profile_names_the_choices() -> None:
    with pytest.raises(CommandError, match="choose one of: flux-dev-nf4"):
        call_command("fetch_models", "dall-e")


def test_flux_dev_is_quantized_to_nf4_in_its_transformer_and_t5(monkeypatch) -> None:
    import importlib.util

    from generation.engine import loader

    # bitsandbytes belongs to the gpu extra and cannot quantize without CUDA; what is checked
    # here is the configuration handed to diffusers.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        loader.importlib.util, "find_spec", lambda name: object() if name == "bitsandbytes" else real_find_spec(name)
    )
    config = _quantization_config(get_profile("flux-dev-nf4"))
    assert config.quant_backend == "bitsandbytes_4bit"
    assert config.components_to_quantize == ["transformer", "text_encoder_2"]
    assert config.quant_kwargs["load_in_4bit"] is True
    assert config.quant_kwargs["bnb_4bit_quant_type"] == "nf4"
    assert _quantization_config(get_profile("sdxl-turbo")) is None


def test_profiles_take_native_sizes_from_the_vendored_architectures() -> None:
    assert (get_profile("flux-dev-nf4").native_width, get_profile("flux-dev-nf4").native_height) == (1024, 1024)
    assert get_profile("sdxl-base").native_width == 1024
    assert get_profile("sdxl-turbo").native_width == 512
    assert get_profile("sd3-medium").native_width == 1024
    assert settings.HOFFDESK_DEFAULT_MODEL == "tiny-sd"


def test_nf4_without_bitsandbytes_says_to_install_the_gpu_extra(monkeypatch) -> None:
    import importlib.util

    from generation.engine import loader
    from generation.engine.loader import EngineError

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        loader.importlib.util, "find_spec", lambda name: None if name == "bitsandbytes" else real_find_spec(name)
    )
    with pytest.raises(EngineError, match=r"install the gpu extra"):
        _quantization_config(get_profile("flux-dev-nf4"))


# --- Real-ESRGAN x4plus: an upscaler fetched from its GitHub release ---------------------------

UPSCALER = "RealESRGAN_x4plus"
RELEASE_PATH = "/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth"


@pytest.fixture
def tiny_esrgan_pth(tmp_path_factory) -> bytes:
    """A real (tiny, random-weight) RRDBNet from the tiny builder, saved as Real-ESRGAN saves its
    release files: ``torch.save`` of ``{"params_ema": state_dict}``."""
    import torch
    from safetensors.torch import load_file

    from generation.engine.tiny import ensure_tiny_upscaler

    state = load_file(str(ensure_tiny_upscaler(tmp_path_factory.mktemp("tiny-models"))))
    buffer = io.BytesIO()
    torch.save({"params_ema": state}, buffer)
    return buffer.getvalue()


@pytest.fixture
def release_server(tiny_esrgan_pth):  # type: ignore[no-untyped-def]
    """A small local HTTP server standing in for GitHub's release download (on another machine,
    unreachable from ours): the release URL answers 302 to an object URL, as github.com does, and
    that serves the file with its Content-Length. ``server.requests`` lists the paths asked for."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            if self.path == RELEASE_PATH:
                self.send_response(302)
                self.send_header("Location", "/objects/release-asset/RealESRGAN_x4plus.pth")
                self.end_headers()
            elif self.path == "/objects/release-asset/RealESRGAN_x4plus.pth":
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(tiny_esrgan_pth)))
                self.end_headers()
                self.wfile.write(tiny_esrgan_pth)
            else:
                self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.requests = requests  # type: ignore[attr-defined]
    server.base_url = f"http://127.0.0.1:{server.server_port}/xinntao/Real-ESRGAN/releases/download"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_help_names_the_upscaler() -> None:
    from generation.management.commands.fetch_models import Command

    text = Command().create_parser("manage.py", "fetch_models").format_help()
    assert UPSCALER in text and "BSD-3" in text


def test_realesrgan_is_fetched_from_its_release_with_a_progress_bar_and_loads(
    tmp_path, settings, monkeypatch, release_server, tiny_esrgan_pth
) -> None:
    import dataclasses
    import hashlib

    from PIL import Image

    from generation.engine.upscale import load_upscaler, upscale_image
    from generation.management.commands import fetch_models

    settings.HOFFDESK_MODELS_DIR = tmp_path
    # The stand-in serves a tiny file, not the 64 MB release asset: expect its hash instead.
    official = fetch_models.UPSCALERS[UPSCALER]
    assert official.sha256 == "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1"
    tiny = dataclasses.replace(official, sha256=hashlib.sha256(tiny_esrgan_pth).hexdigest())
    monkeypatch.setitem(fetch_models.UPSCALERS, UPSCALER, tiny)
    monkeypatch.setenv("HOFFDESK_UPSCALER_BASE_URL", release_server.base_url)
    out, err = io.StringIO(), io.StringIO()
    call_command("fetch_models", UPSCALER, stdout=out, stderr=err)

    target = tmp_path / "upscalers" / "RealESRGAN_x4plus.pth"
    assert target.read_bytes() == tiny_esrgan_pth
    assert release_server.requests[0] == RELEASE_PATH
    assert f"{UPSCALER}: ready at {target}" in out.getvalue()
    assert "100%" in err.getvalue() and "RealESRGAN_x4plus.pth" in err.getvalue()  # the progress bar
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary file left
    upscaler = load_upscaler(target, device="cpu")
    assert (upscaler.name, upscaler.scale) == (UPSCALER, 4)
    assert upscale_image(upscaler, Image.new("RGB", (8, 6), "teal")).size == (32, 24)


def test_a_download_that_does_not_match_the_published_sha256_is_not_put_in_place(
    tmp_path, settings, monkeypatch, release_server
) -> None:
    settings.HOFFDESK_MODELS_DIR = tmp_path
    monkeypatch.setenv("HOFFDESK_UPSCALER_BASE_URL", release_server.base_url)
    err = io.StringIO()
    with pytest.raises(CommandError, match=f"not fetched: {UPSCALER}"):
        call_command("fetch_models", UPSCALER, stdout=io.StringIO(), stderr=err)
    assert "not the published 4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1" in err.getvalue()
    assert list((tmp_path / "upscalers").iterdir()) == []  # neither the file nor its temporary copy


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:9/releases",  # a closed port: nothing answers
        "http://github.invalid/releases",  # a name that does not resolve, as on a machine with no internet
    ],
)
def test_an_unreachable_release_server_says_why_and_fails(tmp_path, settings, monkeypatch, base_url) -> None:
    settings.HOFFDESK_MODELS_DIR = tmp_path
    monkeypatch.setenv("HOFFDESK_UPSCALER_BASE_URL", base_url)
    err = io.StringIO()
    with pytest.raises(CommandError, match=f"not fetched: {UPSCALER}"):
        call_command("fetch_models", UPSCALER, stdout=io.StringIO(), stderr=err)
    assert "not reachable" in err.getvalue() and "HOFFDESK_UPSCALER_BASE_URL" in err.getvalue()
    assert not (tmp_path / "upscalers" / "RealESRGAN_x4plus.pth").exists()
    assert list((tmp_path / "upscalers").glob("*")) == []


def test_an_upscaler_already_in_place_is_not_fetched_again(tmp_path, settings, monkeypatch, release_server) -> None:
    settings.HOFFDESK_MODELS_DIR = tmp_path
    monkeypatch.setenv("HOFFDESK_UPSCALER_BASE_URL", release_server.base_url)
    target = tmp_path / "upscalers" / "RealESRGAN_x4plus.pth"
    target.parent.mkdir()
    target.write_bytes(b"an operator's copy")
    out = io.StringIO()
    call_command("fetch_models", UPSCALER, stdout=out, stderr=io.StringIO())
    assert "already" in out.getvalue() and str(target) in out.getvalue()
    assert target.read_bytes() == b"an operator's copy"
    assert release_server.requests == []
