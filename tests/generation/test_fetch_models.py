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
