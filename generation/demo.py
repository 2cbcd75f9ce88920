"""Demo mode: real profiles run on tiny stand-ins where no real weights are installed.

``HOFFDESK_DEMO``: ``true`` always stands in, ``false`` never does (a profile without weights is
refused, naming the ``fetch_models`` command), ``auto`` (the default) stands in while no real
profile's weights are in ``HOFFDESK_MODELS_DIR``.

The GPU worker that claims a run decides, from its own models folder (``worker_engine_profile``):
in the layout docs/deploy.md recommends the weights live only on the GPU hosts, so the web host's
folder says nothing. Each GPU worker reports what it can run in its heartbeat
(``worker_profiles``); the web reads those reports to say before queueing what a run will use
(``engine_profile_expected``), and falls back to its own folder while no worker has reported
(one machine, or every worker silent). No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from generation.models import WorkerHeartbeat
from generation.profiles import ModelProfile, all_profiles, upscaler_files

# The tiny model of each family: same pipeline class, random weights, built offline.
STAND_INS = {"sd": "tiny-sd", "sdxl": "tiny-sdxl", "flux": "tiny-flux", "sd3": "tiny-sd3"}


class WeightsMissing(Exception):
    """A real profile asked for outside demo mode with no weights installed; the message says
    which command fetches them."""


@dataclass(frozen=True)
class EngineChoice:
    """What runs when a profile is asked for, and why in an editor's words when it is a stand-in."""

    engine_profile: str
    note: str = ""


def weights_installed(profile: ModelProfile) -> bool:
    """Whether ``profile``'s weights are in this process's ``HOFFDESK_MODELS_DIR`` (``fetch_models``
    puts them there, with ``model_index.json`` at the top, as diffusers saves a pipeline)."""
    return (Path(settings.HOFFDESK_MODELS_DIR) / profile.name / "model_index.json").is_file()


def demo_mode() -> bool:
    """Whether this process stands in for every real profile (its own folder and setting)."""
    if settings.HOFFDESK_DEMO == "true":
        return True
    if settings.HOFFDESK_DEMO == "false":
        return False
    return not any(weights_installed(p) for p in all_profiles().values() if not p.tiny)


def _fetch_hint(profile: ModelProfile) -> str:
    return (
        f"Run `python manage.py fetch_models {profile.name}` on the GPU worker, or set HOFFDESK_DEMO=true "
        "to try it on a tiny stand-in."
    )


def worker_engine_profile(profile: ModelProfile) -> str:
    """The profile this process runs when ``profile`` is asked for, from its own models folder:
    what the GPU worker that claims a run calls. ``WeightsMissing`` when it cannot run it."""
    if profile.tiny:
        return profile.name
    if demo_mode():
        return STAND_INS[profile.family]
    if not weights_installed(profile):
        raise WeightsMissing(
            f"{profile.name} is not installed on this machine (no weights in {settings.HOFFDESK_MODELS_DIR}). "
            + _fetch_hint(profile)
        )
    return profile.name


def worker_profiles() -> dict[str, str]:
    """Every profile this process can run -> the profile that runs for it: a GPU worker's report
    in its heartbeat (a few stat calls)."""
    report = {}
    demo = demo_mode()
    for name, profile in all_profiles().items():
        if profile.tiny or (not demo and weights_installed(profile)):
            report[name] = name
        elif demo:
            report[name] = STAND_INS[profile.family]
    return report


def stand_in_note(profile: ModelProfile, engine_profile: str) -> str:
    """The sentence that tells an editor a stand-in will run, or "" when the real profile runs."""
    if engine_profile == profile.name:
        return ""
    return (
        f"no GPU worker has {profile.name} weights: this run will use the stand-in {engine_profile} "
        "(coloured noise from random weights)."
    )


def engine_profile_expected(profile: ModelProfile, reports: list[dict[str, str]] | None = None) -> EngineChoice:
    """What will run when ``profile`` is queued now, as the web can tell before queueing.

    From the profiles that live GPU workers report: the real profile when any of them has its
    weights, else the stand-in when any can run that; refused (``WeightsMissing``) when none can.
    While no live GPU worker has reported, this process's own folder decides (the worker that
    claims the run decides again from its own, and records what it ran).
    """
    if profile.tiny:
        return EngineChoice(profile.name)
    if reports is None:
        reports = live_gpu_worker_profiles()
    if not reports:
        engine = worker_engine_profile(profile)
        note = ""
        if engine != profile.name:
            note = (
                f"no GPU worker has reported yet and this machine has no {profile.name} weights: this run will "
                f"use the stand-in {engine} unless the worker that takes it has them."
            )
        return EngineChoice(engine, note)
    engines = {report[profile.name] for report in reports if profile.name in report}
    if profile.name in engines:
        return EngineChoice(profile.name)
    stand_in = STAND_INS[profile.family]
    if stand_in in engines:
        return EngineChoice(stand_in, stand_in_note(profile, stand_in))
    raise WeightsMissing(
        f"no GPU worker can run {profile.name}: none of the {len(reports)} seen in the last minute has its "
        "weights, and none is in demo mode. " + _fetch_hint(profile)
    )


def live_gpu_worker_profiles() -> list[dict[str, str]]:
    """The reports of the GPU workers seen in the last minute that made one (a worker from
    before reports existed sends none, and says nothing about what it can run)."""
    reports = WorkerHeartbeat.live(str(settings.Q_CLUSTER["name"])).values_list("profiles", flat=True)
    return [report for report in reports if report]


def engine_profile_for(profile: ModelProfile) -> str:
    """The profile that will run when ``profile`` is asked for (the web's expectation)."""
    return engine_profile_expected(profile).engine_profile


def stand_in_notes() -> list[str]:
    """For the generate form, before anything is queued: each real profile that will run on a
    stand-in or cannot run at all now, in an editor's words (one query). Only from live GPU
    workers' reports: with none, the demo notice and the "no GPU worker" banner say enough."""
    reports = live_gpu_worker_profiles()
    if not reports:
        return []
    notes = []
    for profile in all_profiles().values():
        if profile.tiny:
            continue
        try:
            note = engine_profile_expected(profile, reports).note
        except WeightsMissing as exc:
            note = str(exc)
        if note:
            notes.append(note[:1].upper() + note[1:])
    return notes


def demo_notice_due(profile: ModelProfile) -> bool:
    """Whether pages should say images are placeholders when ``profile`` (the site default) is
    asked for: a tiny profile, or a stand-in expected for it. Weights on the GPU hosts count, not
    the web host's folder (one query, and only while this host has no weights of its own)."""
    if profile.tiny:
        return True
    if not demo_mode():
        return False
    try:
        return engine_profile_expected(profile).engine_profile != profile.name
    except WeightsMissing:
        return False


def installed_upscalers(models_dir: Path | None = None) -> list[str]:
    """This host's upscaler models (``HOFFDESK_MODELS_DIR`` unless another folder is given)."""
    return upscaler_files(Path(models_dir or settings.HOFFDESK_MODELS_DIR))


def upscalers_available() -> list[str]:
    """The upscalers a run may name now: those the live GPU workers report, or this host's own
    while no worker has reported (one machine)."""
    reports = (
        WorkerHeartbeat.live(str(settings.Q_CLUSTER["name"])).exclude(profiles={}).values_list("upscalers", flat=True)
    )
    reported = [list(names or []) for names in reports]
    if not reported:
        return installed_upscalers()
    return sorted({name for names in reported for name in names})
