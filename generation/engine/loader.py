"""Loading pipelines and keeping them warm in the worker.

A profile is loaded once per worker process and kept. A 12 GB card holds one real model at a
time, so loading a real profile first evicts any other real one (never FLUX and SDXL together).
Tiny profiles are a few MB and stay.
"""

from __future__ import annotations

import gc
import importlib.util
import time
from pathlib import Path
from typing import Any

import torch

from generation.engine import tiny
from generation.profiles import ModelProfile

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class EngineError(Exception):
    """A generation failed for a reason an editor or operator can act on."""


class ModelUnavailable(EngineError):
    pass


def pick_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def weights_source(profile: ModelProfile, models_dir: Path) -> str:
    """Where a profile's weights come from: its local folder when present, else its hub id."""
    folder = models_dir / profile.name
    if profile.tiny:
        return str(tiny.ensure_tiny(profile.name, folder))
    if (folder / "model_index.json").exists():
        return str(folder)
    assert profile.hub_id is not None
    return profile.hub_id


def _quantization_config(profile: ModelProfile) -> Any:
    if profile.quantization != "nf4":
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise EngineError(
            f"{profile.name} is quantized to 4-bit nf4 by bitsandbytes, which is not installed in this "
            "worker's environment: install the gpu extra (pip install -e '.[gpu]') and restart the worker."
        )
    from diffusers.quantizers import PipelineQuantizationConfig

    return PipelineQuantizationConfig(
        quant_backend="bitsandbytes_4bit",
        quant_kwargs={
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_compute_dtype": DTYPES[profile.dtype],  # type: ignore[dict-item]
        },
        components_to_quantize=list(profile.quantize_components),
    )


def load_pipeline(profile: ModelProfile, models_dir: Path, device: str) -> Any:
    """Load ``profile`` through diffusers' ``from_pretrained``, placed for a 12 GB card."""
    import diffusers

    pipeline_class = getattr(diffusers, profile.pipeline_class)
    source = weights_source(profile, models_dir)
    kwargs: dict[str, Any] = {"dtype": DTYPES[profile.dtype] if device == "cuda" else torch.float32}
    quantization = _quantization_config(profile) if device == "cuda" else None
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    try:
        pipe = pipeline_class.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        if source == profile.hub_id:
            raise ModelUnavailable(
                f"The weights of {profile.name} ({profile.hub_id}) are not on this machine. "
                f"Run `manage.py fetch_models {profile.name}` where the Hugging Face hub is "
                f"reachable, or put a diffusers folder at {models_dir / profile.name}. ({exc})"
            ) from exc
        raise
    if device == "cuda" and profile.memory == "model_cpu_offload":
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)
    if profile.vae_tiling:
        pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def quiet_libraries() -> None:
    """No per-load progress bars or tokenizer length warnings in the worker's log."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


class PipelineCache:
    """Warm pipelines of one worker process, by profile name."""

    def __init__(self, models_dir: Path, device: str | None = None) -> None:
        self.models_dir = models_dir
        self.device = device or pick_device()
        quiet_libraries()
        self._pipes: dict[str, tuple[ModelProfile, Any]] = {}

    def loaded(self) -> list[str]:
        return list(self._pipes)

    def get(self, profile: ModelProfile) -> tuple[Any, float]:
        """The warm pipeline for ``profile`` and the seconds spent loading it (0.0 when warm)."""
        if profile.name in self._pipes:
            return self._pipes[profile.name][1], 0.0
        if profile.is_real:
            self.evict_big()
        started = time.perf_counter()
        pipe = load_pipeline(profile, self.models_dir, self.device)
        self._pipes[profile.name] = (profile, pipe)
        return pipe, time.perf_counter() - started

    def put(self, profile: ModelProfile, pipe: Any) -> None:
        """Keep an already built pipeline warm (benchmarks build full-size random-weight models)."""
        if profile.is_real:
            self.evict_big()
        self._pipes[profile.name] = (profile, pipe)

    def evict_big(self) -> None:
        """Drop every real (big) pipeline, so the next one has the whole card."""
        real = [name for name, (profile, _) in self._pipes.items() if profile.is_real]
        for name in real:
            del self._pipes[name]
        if real:
            free_memory()


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
