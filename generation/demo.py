"""Demo mode: real profiles run on tiny stand-ins while no real weights are installed.

``HOFFDESK_DEMO``: ``true`` always stands in, ``false`` never does (a profile without weights is
refused before queueing, naming the ``fetch_models`` command), ``auto`` (the default) stands in
while no real profile's weights are in ``HOFFDESK_MODELS_DIR``. No torch here: the web process
decides this when a run is submitted, and the run records both profiles.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from generation.profiles import ModelProfile, all_profiles

# The tiny model of each family: same pipeline class, random weights, built offline.
STAND_INS = {"sd": "tiny-sd", "sdxl": "tiny-sdxl", "flux": "tiny-flux", "sd3": "tiny-sd3"}


class WeightsMissing(Exception):
    """A real profile asked for outside demo mode with no weights installed; the message says
    which command fetches them."""


def weights_installed(profile: ModelProfile) -> bool:
    """Whether ``profile``'s weights are in ``HOFFDESK_MODELS_DIR`` (``fetch_models`` puts them
    there, with ``model_index.json`` at the top, as diffusers saves a pipeline)."""
    return (Path(settings.HOFFDESK_MODELS_DIR) / profile.name / "model_index.json").is_file()


def demo_mode() -> bool:
    if settings.HOFFDESK_DEMO == "true":
        return True
    if settings.HOFFDESK_DEMO == "false":
        return False
    return not any(weights_installed(p) for p in all_profiles().values() if not p.tiny)


def engine_profile_for(profile: ModelProfile) -> str:
    """The profile that will really run when ``profile`` is asked for."""
    if profile.tiny:
        return profile.name
    if demo_mode():
        return STAND_INS[profile.family]
    if not weights_installed(profile):
        raise WeightsMissing(
            f"{profile.name} is not installed on this machine (no weights in {settings.HOFFDESK_MODELS_DIR}). "
            f"Run `python manage.py fetch_models {profile.name}` on the GPU worker, or set HOFFDESK_DEMO=true "
            "to try it on a tiny stand-in."
        )
    return profile.name
