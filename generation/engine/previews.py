"""Live previews: a cheap picture of a run's current latents, without the VAE.

A latent of the SD-family VAEs is close to a linear function of the image's colour, so a 3 x C
matrix (and a bias) gives a blurry but faithful preview in microseconds: what ComfyUI's
"latent2rgb" and AUTOMATIC1111's "Approx cheap" previews do. The per-family factors below are
ComfyUI's published ones (comfy/latent_formats.py, classes SD15, SDXL, SD3 and Flux;
https://github.com/comfyanonymous/ComfyUI/blob/master/comfy/latent_formats.py), fitted for the
latents as the samplers see them (already scaled and shifted), which is what diffusers hands a
step callback too. Shown as ComfyUI shows them: ``(rgb + 1) / 2``, clamped.

When a TAESD decoder (diffusers' ``AutoencoderTiny``, a few MB) is installed in the models
folder, in the folder named after its published repository (``taesd``, ``taesdxl``, ``taesd3``,
``taef1`` from madebyollin/*, saved as diffusers folders), it decodes instead: a real picture for
a few milliseconds on a GPU. It takes the pipeline's latents as they are (its config's scaling
factor is 1 and its shift 0, as ComfyUI's previewer feeds it).

The engine only makes the JPEGs; who stores or shows them (the worker, ``generation.previews``)
says when it wants one through ``PreviewSink``. Nothing here may fail a run: ``offer`` logs and
goes on.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

# Longest side of a preview JPEG: a run card's tile, a few kB.
MAX_SIDE = 256
JPEG_QUALITY = 70

Factors = tuple[tuple[tuple[float, float, float], ...], tuple[float, float, float]]

_SD15: Factors = (
    ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177)),
    (0.0, 0.0, 0.0),
)
_SDXL: Factors = (
    ((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362), (-0.3165, -0.2492, -0.2188)),
    (0.1084, -0.0175, -0.0011),
)
_SD3: Factors = (
    (
        (-0.0922, -0.0175, 0.0749),
        (0.0311, 0.0633, 0.0954),
        (0.1994, 0.0927, 0.0458),
        (0.0856, 0.0339, 0.0902),
        (0.0587, 0.0272, -0.0496),
        (-0.0006, 0.1104, 0.0309),
        (0.0978, 0.0306, 0.0427),
        (-0.0042, 0.1038, 0.1358),
        (-0.0194, 0.0020, 0.0669),
        (-0.0488, 0.0130, -0.0268),
        (0.0922, 0.0988, 0.0951),
        (-0.0278, 0.0524, -0.0542),
        (0.0332, 0.0456, 0.0895),
        (-0.0069, -0.0030, -0.0810),
        (-0.0596, -0.0465, -0.0293),
        (-0.1448, -0.1463, -0.1189),
    ),
    (0.2394, 0.2135, 0.1925),
)
_FLUX: Factors = (
    (
        (-0.0346, 0.0244, 0.0681),
        (0.0034, 0.0210, 0.0687),
        (0.0275, -0.0668, -0.0433),
        (-0.0174, 0.0160, 0.0617),
        (0.0859, 0.0721, 0.0329),
        (0.0004, 0.0383, 0.0115),
        (0.0405, 0.0861, 0.0915),
        (-0.0236, -0.0185, -0.0259),
        (-0.0245, 0.0250, 0.1180),
        (0.1008, 0.0755, -0.0421),
        (-0.0515, 0.0201, 0.0011),
        (0.0428, -0.0012, -0.0036),
        (0.0817, 0.0765, 0.0749),
        (-0.1264, -0.0522, -0.1103),
        (-0.0280, -0.0881, -0.0499),
        (-0.1262, -0.0982, -0.0778),
    ),
    (-0.0329, -0.0718, -0.0851),
)
FAMILY_FACTORS: dict[str, Factors] = {"sd": _SD15, "sdxl": _SDXL, "sd3": _SD3, "flux": _FLUX}

# The TAESD decoder of each family: its folder in the models folder (the published repository's name).
TAESD_FOLDERS = {"sd": "taesd", "sdxl": "taesdxl", "sd3": "taesd3", "flux": "taef1"}
# Loaded once per process: (folder, device, dtype) -> decoder.
_decoders: dict[tuple[str, str, str], Any] = {}


@runtime_checkable
class PreviewSink(Protocol):
    """A step callback that also takes previews: asked on each step whether one is due (so the
    engine decodes only then), and handed one JPEG per image of the batch."""

    def __call__(self, step: int, total: int) -> None: ...

    def preview_due(self, step: int) -> bool: ...

    def preview(self, images: list[bytes], step: int) -> None: ...


def latent_rgb(latents: torch.Tensor, family: str) -> np.ndarray:
    """``latents`` (batch, channels, h, w) as uint8 RGB (batch, h, w, 3) by the family's factors.

    A latent whose channel count is not its family's (the tiny test models: 4 channels for a
    FLUX-shaped model whose real VAE has 16) has no published factors; its first three channels,
    each stretched to its own range, stand in for red, green and blue, which still shows the
    picture forming, if not its colours.

    In numpy, not torch: these are a few small operations, and each torch operation wakes the
    worker's thread pool, which on a busy CPU cost ~50 ms a preview against under 1 ms here.
    """
    array = latents.detach().to("cpu", torch.float32).numpy()
    factors = FAMILY_FACTORS.get(family)
    if factors is not None and array.shape[1] == len(factors[0]):
        weight = np.asarray(factors[0], dtype=np.float32)  # (channels, 3)
        bias = np.asarray(factors[1], dtype=np.float32)
        rgb = np.moveaxis(array, 1, -1) @ weight + bias
        unit = np.clip((rgb + 1.0) / 2.0, 0.0, 1.0)
    else:
        first = np.moveaxis(array[:, :3], 1, -1)
        if first.shape[-1] < 3:  # fewer than three channels: grey
            first = np.repeat(first[..., :1], 3, axis=-1)
        low = first.min(axis=(1, 2), keepdims=True)
        high = first.max(axis=(1, 2), keepdims=True)
        unit = (first - low) / np.maximum(high - low, 1e-6)
    return np.rint(unit * 255.0).astype(np.uint8)


def tiny_decoder(models_dir: Path | None, family: str, *, device: Any, dtype: Any) -> Any | None:
    """The family's TAESD decoder when one is installed in ``models_dir`` (loaded once), else None."""
    if models_dir is None or family not in TAESD_FOLDERS:
        return None
    folder = Path(models_dir) / TAESD_FOLDERS[family]
    if not (folder / "config.json").is_file():
        return None
    key = (str(folder), str(device), str(dtype))
    if key not in _decoders:
        from diffusers import AutoencoderTiny

        _decoders[key] = AutoencoderTiny.from_pretrained(folder).to(device=device, dtype=dtype).eval()
    return _decoders[key]


def decoded_rgb(latents: torch.Tensor, decoder: Any) -> np.ndarray:
    """``latents`` decoded by a TAESD decoder as uint8 RGB (batch, h, w, 3), at the image's size."""
    with torch.no_grad():
        images = decoder.decode(latents.to(decoder.dtype), return_dict=False)[0]
    unit = ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)  # diffusers' [-1, 1] convention
    return (unit.movedim(1, -1) * 255.0).round().to(torch.uint8).cpu().numpy()


def unpack_flux(latents: torch.Tensor, *, width: int, height: int, vae_scale_factor: int) -> torch.Tensor:
    """FLUX's packed latents (batch, patches, channels x 4) back on the image's latent grid
    (batch, channels, h, w): the 2x2 patches undone, as ``FluxPipeline._unpack_latents`` does."""
    batch, _, packed_channels = latents.shape
    rows = 2 * (height // (vae_scale_factor * 2))
    cols = 2 * (width // (vae_scale_factor * 2))
    channels = packed_channels // 4
    shape = (batch, rows // 2, cols // 2, channels, 2, 2)
    if latents.device.type == "cpu" and latents.dtype == torch.float32:
        # The copy in numpy: on a busy CPU torch's thread pool made it ~3x slower.
        array = latents.detach().numpy().reshape(shape).transpose(0, 3, 1, 4, 2, 5)
        return torch.from_numpy(np.ascontiguousarray(array).reshape(batch, channels, rows, cols))
    return latents.view(shape).permute(0, 3, 1, 4, 2, 5).reshape(batch, channels, rows, cols)


def _jpeg(pixels: np.ndarray, width: int, height: int, max_side: int) -> bytes:
    scale = min(1.0, max_side / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.fromarray(pixels, "RGB").resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def preview_jpegs(
    latents: torch.Tensor,
    *,
    family: str,
    width: int,
    height: int,
    vae_scale_factor: int,
    max_side: int = MAX_SIDE,
    decoder: Any | None = None,
) -> list[bytes]:
    """One small JPEG per image of the batch, in the image's aspect, longest side ``max_side``
    at most (never larger than the image itself): ``decoder``'s decoding (TAESD) when it takes
    these latents' channels, else the family's linear approximation."""
    if latents.ndim == 3:  # FLUX's packed sequence
        if decoder is None:
            latents = latents.detach().to("cpu", torch.float32)
        latents = unpack_flux(latents, width=width, height=height, vae_scale_factor=vae_scale_factor)
    if decoder is not None and decoder.config.latent_channels == latents.shape[1]:
        rgb = decoded_rgb(latents, decoder)
    else:
        rgb = latent_rgb(latents, family)
    return [_jpeg(pixels, width, height, max_side) for pixels in rgb]


def offer(
    on_step: Any, pipe: Any, family: str, callback_kwargs: dict[str, Any], *, width: int, height: int, step: int
) -> None:
    """Hand ``on_step`` this step's previews if it takes previews and wants one now.

    ``on_step.models_dir`` (when it has one) is where a TAESD decoder may be installed.
    Called from the pipelines' step callbacks. A preview is a nicety: any error making it is
    logged and the run goes on (``Cancelled`` comes from the progress callback, never from here).
    """
    if not isinstance(on_step, PreviewSink):
        return
    latents = callback_kwargs.get("latents")
    if latents is None or not on_step.preview_due(step):
        return
    try:
        decoder = tiny_decoder(getattr(on_step, "models_dir", None), family, device=latents.device, dtype=latents.dtype)
        images = preview_jpegs(
            latents,
            family=family,
            width=width,
            height=height,
            vae_scale_factor=int(pipe.vae_scale_factor),
            decoder=decoder,
        )
        on_step.preview(images, step)
    except Exception:
        logger.warning("the step %s preview failed; the run goes on", step, exc_info=True)
