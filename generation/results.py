"""What an engine hands the worker: the candidates it made, whichever engine made them.

Plain data, no torch: the diffusers engine (``generation.engine``) and the ComfyUI engine
(``generation.comfyui_engine``) both return a ``GenerationResult``, and the worker records it the
same way (``generation.tasks``), so the queue, recovery and review never ask which engine ran.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GeneratedImage:
    """One candidate: its PNG (recipe chunks included), hash and final size."""

    index: int
    seed: int
    png: bytes
    sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class GenerationResult:
    images: list[GeneratedImage]
    load_seconds: float
    inference_seconds: float
