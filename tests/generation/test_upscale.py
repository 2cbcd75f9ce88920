"""Upscaler models: the folder's listing, loading ESRGAN-family files, tiles, refusals."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from generation.engine import tiny, upscale
from generation.engine.loader import EngineError
from generation.engine.upscale import RRDBNet, UpscalerError, list_upscalers, load_upscaler, upscale_image

pytestmark = pytest.mark.usefixtures("fixed_threads")


def noise_image(width: int, height: int, seed: int = 7) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_the_tiny_upscaler_is_built_deterministically_and_makes_a_4x_image(tmp_path: Path) -> None:
    a = tiny.ensure_tiny_upscaler(tmp_path / "a")
    b = tiny.ensure_tiny_upscaler(tmp_path / "b")
    assert a == tmp_path / "a" / "upscalers" / "tiny-esrgan-x4.safetensors"
    assert a.read_bytes() == b.read_bytes()
    assert list_upscalers(tmp_path / "a") == ["tiny-esrgan-x4"]

    model = load_upscaler(a, device="cpu")
    assert model.scale == 4
    assert model.name == "tiny-esrgan-x4"
    out = upscale_image(model, noise_image(24, 16))
    assert out.size == (96, 64)
    assert out.mode == "RGB"


def test_tiled_upscaling_matches_untiled_and_the_model_never_sees_more_than_a_tile(tmp_path: Path) -> None:
    model = load_upscaler(tiny.ensure_tiny_upscaler(tmp_path), device="cpu")
    image = noise_image(120, 60)
    seen: list[tuple[int, ...]] = []
    hook = model.module.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    try:
        whole = upscale_image(model, image, tile=512, overlap=0)
        assert seen == [(1, 3, 60, 120)]
        seen.clear()
        tiled = upscale_image(model, image, tile=40, overlap=20)
    finally:
        hook.remove()
    # Bounded memory: each call sees at most a tile and its overlap, whatever the image's size.
    assert len(seen) == 6  # 3 x 2 tiles
    assert max(h * w for _, _, h, w in seen) <= 80 * 60 < 120 * 60  # a tile and its overlap, clipped
    # The overlap is wider than the tiny model's receptive field: the seams cannot show.
    diff = np.abs(np.asarray(whole, dtype=np.int16) - np.asarray(tiled, dtype=np.int16))
    assert diff.max() <= 1


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_corrupt_upscaler_file_is_refused_naming_the_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"\x00not a model at all" * 10)
    with pytest.raises(UpscalerError, match=rf"broken{suffix}.*could not be read"):
        load_upscaler(path, device="cpu")
    assert issubclass(UpscalerError, EngineError)


def test_a_file_of_another_architecture_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "some-vae.safetensors"
    save_file({"encoder.conv_in.weight": torch.zeros(4, 3, 3, 3)}, str(path))
    with pytest.raises(UpscalerError, match=r"some-vae\.safetensors is not an ESRGAN-family upscaler"):
        load_upscaler(path, device="cpu")


class NotAWeight:
    """A pickled object of a class: a weights-only load refuses it (no code runs from a .pth)."""


def test_a_pth_is_loaded_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with path.open("wb") as fh:
        pickle.dump({"params_ema": NotAWeight()}, fh, protocol=2)
    with pytest.raises(UpscalerError, match=r"evil\.pth could not be read: it holds Python objects, not only weights"):
        load_upscaler(path, device="cpu")


def test_a_pth_with_the_params_ema_wrapper_loads_the_same_model(tmp_path: Path) -> None:
    safetensors_path = tiny.ensure_tiny_upscaler(tmp_path)
    from safetensors.torch import load_file

    state = load_file(str(safetensors_path))
    torch.save({"params_ema": state}, tmp_path / "wrapped.pth")
    torch.save({"params": state}, tmp_path / "plain.pth")
    image = noise_image(20, 12)
    expected = np.asarray(upscale_image(load_upscaler(safetensors_path, device="cpu"), image))
    for name in ("wrapped.pth", "plain.pth"):
        got = np.asarray(upscale_image(load_upscaler(tmp_path / name, device="cpu"), image))
        assert np.array_equal(got, expected)


@pytest.mark.parametrize(("scale", "in_channels"), [(2, 12), (1, 48)])
def test_pixel_unshuffle_models_are_detected_as_x2_and_x1(tmp_path: Path, scale: int, in_channels: int) -> None:
    torch.manual_seed(0)
    net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=32, scale=scale)
    assert net.conv_first.in_channels == in_channels
    path = tmp_path / f"x{scale}.safetensors"
    save_file(net.state_dict(), str(path))
    model = load_upscaler(path, device="cpu")
    assert model.scale == scale
    assert upscale_image(model, noise_image(18, 10)).size == (18 * scale, 10 * scale)


def test_the_folder_lists_safetensors_and_pth_files_by_stem(tmp_path: Path) -> None:
    assert list_upscalers(tmp_path) == []
    folder = upscale.upscalers_dir(tmp_path)
    folder.mkdir(parents=True)
    for name in ("RealESRGAN_x4plus.pth", "b-model.safetensors", "notes.txt", ".hidden.pth"):
        (folder / name).write_bytes(b"x")
    assert list_upscalers(tmp_path) == ["RealESRGAN_x4plus", "b-model"]
    assert upscale.upscaler_path(tmp_path, "b-model") == folder / "b-model.safetensors"
    with pytest.raises(UpscalerError, match=r"No upscaler named 'missing' in .*upscalers.*RealESRGAN_x4plus, b-model"):
        upscale.upscaler_path(tmp_path, "missing")
