"""Draft mode, decided before queueing (plain code: the web never imports torch).

A draft is a fast first look for culling: fewer steps and, where diffusers has one for the
model's denoiser, a cache acceleration on it. "Final render" then re-runs a keeper's seed and
prompt at full quality with no cache (``generation.services.run_regenerate``).

- Steps: half the full steps (the preset's, else the model's default), at least
  ``DRAFT_MIN_STEPS`` and never more than the full steps; steps given explicitly win.
- Cache: First Block Cache on FLUX's transformer (diffusers 0.42.1's ``CacheMixin``; published
  1.4-1.55x on FLUX.1-dev at near-zero loss), at a conservative threshold. UNet families (SD 1.5,
  SDXL) have no transformer cache in diffusers and its SD3 transformer has no ``CacheMixin``:
  their drafts are fewer steps only, recorded with an empty cache (the run card and the PNG say
  so), never a cache that silently does nothing.
"""

from __future__ import annotations

from typing import Any

DRAFT_MIN_STEPS = 4
# The model families whose transformer takes a cache, and the cache a draft of them uses.
DRAFT_CACHES: dict[str, dict[str, Any]] = {
    "flux": {"kind": "FirstBlockCache", "threshold": 0.08},
}


def draft_steps(full_steps: int) -> int:
    """A draft's steps for a run whose full quality is ``full_steps``."""
    return min(full_steps, max(DRAFT_MIN_STEPS, full_steps // 2))


def draft_cache_for(family: str) -> dict[str, Any]:
    """The cache a draft on a model of ``family`` uses (a fresh dict; empty: fewer steps only)."""
    return dict(DRAFT_CACHES.get(family, {}))


def draft_label(cache: dict[str, Any]) -> str:
    """One line for a run card: "draft: FirstBlockCache (threshold 0.08)" or "draft: fewer steps"."""
    if not cache:
        return "draft: fewer steps, no cache for this model"
    settings = ", ".join(f"{key} {value}" for key, value in cache.items() if key != "kind")
    return f"draft: {cache.get('kind')} ({settings})" if settings else f"draft: {cache.get('kind')}"
