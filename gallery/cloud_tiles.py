"""The "cloud: not reproducible" pill of a cloud run's tiles (``gallery.tiles``), plain f-strings
like the rest of the tile: a cloud image has no seed, so no re-run can make it again."""

from __future__ import annotations

from html import escape
from typing import Any

from generation.cloud import NOT_REPRODUCIBLE, money


def cloud_label(run: Any) -> str:
    """The pill, with model and price in its title ("" for a local run)."""
    if getattr(run, "cloud_cost", None) is None:
        return ""
    price = money(run.cloud_cost / max(run.count, 1))
    title = f"Made in the cloud by {run.model_profile.removeprefix('cloud:')} for {price} an image; no seed to re-run."
    return (
        f'<span class="pill cloud" data-testid="cloud-label" title="{escape(title, quote=True)}">'
        f"{NOT_REPRODUCIBLE}</span> "
    )
