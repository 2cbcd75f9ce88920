"""Draft mode's cache acceleration: diffusers' cache hooks on a diffusion transformer.

A draft recipe carries ``{"kind": "FirstBlockCache", "threshold": 0.08}`` (the kind names a
``diffusers.hooks.<kind>Config``; the rest are its arguments). The worker keeps a pipeline warm
between runs, so the cache is put on the transformer for the draft's first pass only and always
taken off again, whatever happens: a later full-quality run must never run with it.

UNet families (SD 1.5, SDXL) have no such cache in diffusers 0.42.1, nor does its SD3
transformer (``CacheMixin`` is on FLUX's): a draft of those is fewer steps only, recorded with
no cache (``generation.drafts`` decides that before queueing), and a cache asked for on them
anyway is refused here rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from generation.engine.loader import EngineError

# The kinds whose settings are plain JSON numbers (MagCache needs per-model calibration arrays,
# FasterCache and Pyramid Attention Broadcast callables): what a recipe may name.
CACHE_KINDS = ("FirstBlockCache", "TaylorSeerCache")


def cache_config(cache: dict[str, Any]) -> Any:
    """The diffusers config object for a recipe's cache, or ``EngineError`` naming what is wrong."""
    import diffusers.hooks

    kind = cache.get("kind")
    if kind not in CACHE_KINDS:
        raise EngineError(f"draft cache kind must be one of {', '.join(CACHE_KINDS)}, not {kind!r}")
    settings = {key: value for key, value in cache.items() if key != "kind"}
    try:
        return getattr(diffusers.hooks, f"{kind}Config")(**settings)
    except TypeError as exc:
        raise EngineError(f"bad {kind} settings {settings}: {exc}") from exc


@contextmanager
def draft_cache_applied(pipe: Any, profile_name: str, cache: dict[str, Any] | None) -> Iterator[None]:
    """Inside: ``cache`` is on the pipeline's transformer (nothing when ``cache`` is empty).
    After: off again, even when the run raised or was cancelled."""
    if not cache:
        yield
        return
    transformer = getattr(pipe, "transformer", None)
    if transformer is None or not hasattr(transformer, "enable_cache"):
        raise EngineError(
            f"{profile_name} has no transformer cache in diffusers (only FLUX's transformer has one): "
            "a draft of it is fewer steps only, with no cache"
        )
    config = cache_config(cache)
    if transformer.is_cache_enabled:  # never expected: every run below takes its cache off again
        transformer.disable_cache()
    transformer.enable_cache(config)
    try:
        yield
    finally:
        transformer.disable_cache()
