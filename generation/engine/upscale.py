"""Upscaler models for the hires pass: ESRGAN-family files in ``HOFFDESK_MODELS_DIR/upscalers/``.

spandrel (what ComfyUI uses) loads them when it imports. It cannot everywhere: it imports
torchvision, and PyPI's torchvision does not load beside a CPU build of torch, so without it the
ESRGAN family (ESRGAN, Real-ESRGAN, BSRGAN-style "new-arch" keys) is loaded here by a small
RRDBNet that reads its shape from the state dict the way spandrel does. Either way a file that
cannot be read, or holds another architecture, is refused with its name: a run never quietly
becomes a Lanczos resize.

Large images are upscaled in tiles (each with an overlap, cropped on the way back), so memory
is bounded by the tile size, not by the image.
"""

from __future__ import annotations

import functools
import math
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from generation.engine.loader import EngineError
from generation.profiles import UPSCALER_SUFFIXES, UPSCALERS_FOLDER, upscaler_files

# The resize that needs no model, named as AUTOMATIC1111 names it in ``parameters``.
LANCZOS = "lanczos"
# Tiles in input pixels. A 128 px tile with 16 px around it keeps Real-ESRGAN x4plus's
# activations to a few hundred MB whatever the image's size (bench/hires.py measures it); the
# overlap is what a tile's edge borrows from its neighbours (Real-ESRGAN's own tiling pads 10).
TILE = 128
OVERLAP = 16


class UpscalerError(EngineError):
    """An upscaler file that is missing, unreadable, or not a model this worker can run."""


def upscalers_dir(models_dir: Path) -> Path:
    return models_dir / UPSCALERS_FOLDER


def list_upscalers(models_dir: Path) -> list[str]:
    """The upscaler models this worker has, by file stem (what a recipe's ``hires_upscaler`` names)."""
    return upscaler_files(models_dir)


def upscaler_path(models_dir: Path, name: str) -> Path:
    """The file of the upscaler ``name``; ``UpscalerError`` naming the folder and what is there."""
    folder = upscalers_dir(models_dir)
    if name and "/" not in name and "\\" not in name and not name.startswith("."):
        for suffix in UPSCALER_SUFFIXES:
            path = folder / f"{name}{suffix}"
            if path.is_file():
                return path
    have = ", ".join(list_upscalers(models_dir)) or "none"
    raise UpscalerError(f"No upscaler named {name!r} in {folder} (this worker has: {have}).")


# --- the ESRGAN family (Real-ESRGAN's RRDBNet, "new-arch" key names) -------------------------


class ResidualDenseBlock(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """Real-ESRGAN's generator: x4 by two nearest-neighbour doublings; x2 and x1 models first
    fold each 2x2 (or 4x4) block of pixels into channels (pixel unshuffle), as Real-ESRGAN x2plus."""

    def __init__(
        self, *, num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32, scale: int = 4, channels: int = 3
    ) -> None:
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError(f"RRDBNet scale must be 1, 2 or 4, not {scale}")
        self.scale = scale
        self.unshuffle = {4: 1, 2: 2, 1: 4}[scale]
        self.conv_first = nn.Conv2d(channels * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, channels, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if self.unshuffle > 1:
            pad_h, pad_w = (-height) % self.unshuffle, (-width) % self.unshuffle
            if pad_h or pad_w:
                x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return out[..., : height * self.scale, : width * self.scale]


RRDB_KEYS = ("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight", "conv_up1.weight", "conv_last.weight")


def rrdbnet_from_state(state: dict[str, torch.Tensor]) -> RRDBNet:
    """An RRDBNet shaped as the state dict says (as spandrel reads it): features from
    ``conv_first``, growth from the first dense conv, blocks from the ``body.N`` keys, and the
    scale from the up convs (x4) divided by the pixel unshuffle that ``conv_first``'s input
    channels show (12: x2, 48: x1). ``ValueError`` when the keys are not this architecture."""
    missing = [key for key in RRDB_KEYS if key not in state]
    if missing:
        raise ValueError(f"no {', '.join(missing)}")
    if "conv_up3.weight" in state or "conv_up2.weight" not in state:
        raise ValueError("only x4 upsampling trunks (conv_up1 and conv_up2) are supported")
    channels = state["conv_last.weight"].shape[0]
    in_channels = state["conv_first.weight"].shape[1]
    unshuffle = math.isqrt(in_channels // channels)
    if in_channels % channels or unshuffle**2 * channels != in_channels or unshuffle not in (1, 2, 4):
        raise ValueError(f"conv_first takes {in_channels} channels for {channels} out")
    blocks = {int(m.group(1)) for key in state if (m := re.match(r"body\.(\d+)\.rdb1\.conv1\.weight$", key))}
    net = RRDBNet(
        num_feat=state["conv_first.weight"].shape[0],
        num_block=max(blocks) + 1,
        num_grow_ch=state["body.0.rdb1.conv1.weight"].shape[0],
        scale=4 // unshuffle,
        channels=channels,
    )
    net.load_state_dict(state, strict=True)
    return net


# --- loading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upscaler:
    """A loaded upscaler: a module that maps (1, 3, H, W) in 0..1 to (1, 3, sH, sW)."""

    name: str
    path: Path
    scale: int
    module: Any
    device: str
    loader: str  # "spandrel" or "built-in RRDBNet"


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    # weights_only: a .pth is a pickle, and nothing in a dropped-in file may run code.
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict):
        raise ValueError(f"holds a {type(data).__name__}, not a state dict")
    for wrapper in ("params_ema", "params"):  # Real-ESRGAN / BasicSR training checkpoints
        if isinstance(data.get(wrapper), dict):
            data = data[wrapper]
            break
    return data


def _spandrel() -> Any | None:
    try:
        import spandrel
    except (ImportError, RuntimeError, OSError):
        # Not installed, or its torchvision does not load beside this torch: the built-in loader.
        return None
    return spandrel


def load_upscaler(path: Path, *, device: str) -> Upscaler:
    """Load the upscaler file at ``path`` onto ``device``, or ``UpscalerError`` naming the file."""
    stat = path.stat()
    return _load(str(path), stat.st_mtime_ns, stat.st_size, device)


@functools.lru_cache(maxsize=1)
def _load(path_text: str, _mtime_ns: int, _size: int, device: str) -> Upscaler:
    """One upscaler stays warm in the worker; a changed file (new mtime or size) loads again."""
    path = Path(path_text)
    spandrel = _spandrel()
    if spandrel is not None:
        try:
            descriptor = spandrel.ModelLoader(device=device).load_from_file(path)
        except spandrel.UnsupportedModelError as exc:
            raise UpscalerError(f"The upscaler file {path.name} is not an architecture spandrel knows: {exc}") from exc
        except Exception as exc:
            message = f"The upscaler file {path.name} could not be read: {type(exc).__name__}: {exc}"
            raise UpscalerError(message) from exc
        if not isinstance(descriptor, spandrel.ImageModelDescriptor):
            raise UpscalerError(f"The upscaler file {path.name} holds a {type(descriptor).__name__}, not an upscaler")
        descriptor.model.eval()
        return Upscaler(path.stem, path, int(descriptor.scale), descriptor.model, device, "spandrel")
    try:
        state = _read_state(path)
    except pickle.UnpicklingError as exc:
        raise UpscalerError(
            f"The upscaler file {path.name} could not be read: it holds Python objects, not only weights "
            "(a .pth is loaded weights-only, so no code in it runs)."
        ) from exc
    except Exception as exc:
        raise UpscalerError(f"The upscaler file {path.name} could not be read: {type(exc).__name__}: {exc}") from exc
    try:
        net = rrdbnet_from_state(state)
    except (ValueError, RuntimeError) as exc:
        raise UpscalerError(
            f"The upscaler file {path.name} is not an ESRGAN-family upscaler this worker can load ({exc}). "
            "Without spandrel (the gpu extra) only ESRGAN / Real-ESRGAN RRDBNet files load."
        ) from exc
    net.eval().to(device)
    return Upscaler(path.stem, path, net.scale, net, device, "built-in RRDBNet")


def upscale_image(upscaler: Upscaler, image: Image.Image, *, tile: int = TILE, overlap: int = OVERLAP) -> Image.Image:
    """``image`` enlarged by the model's scale, in tiles of ``tile`` input pixels a side.

    Each tile is run with ``overlap`` pixels of its neighbours around it and only its own part
    of the result is kept, so seams only show where the model looks further than the overlap.
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    height, width = pixels.shape[:2]
    scale = upscaler.scale
    out = np.empty((height * scale, width * scale, 3), dtype=np.uint8)
    param = next(iter(upscaler.module.parameters()), None)
    dtype = param.dtype if param is not None else torch.float32
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            y0, x0 = max(top - overlap, 0), max(left - overlap, 0)
            y1, x1 = min(bottom + overlap, height), min(right + overlap, width)
            patch = torch.from_numpy(np.ascontiguousarray(pixels[y0:y1, x0:x1].transpose(2, 0, 1)))[None]
            with torch.inference_mode():
                result = upscaler.module(patch.to(upscaler.device, dtype))
            keep = result[0, :, (top - y0) * scale : (bottom - y0) * scale, (left - x0) * scale : (right - x0) * scale]
            rgb = (keep.float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
            out[top * scale : bottom * scale, left * scale : right * scale] = rgb
    return Image.fromarray(out)
