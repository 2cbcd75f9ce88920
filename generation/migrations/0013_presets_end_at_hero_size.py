"""Every SDXL Turbo preset ends at hero size: the first pass at 912x480 (SDXL Turbo's 512 class, in
the hero's aspect), then the hires pass x1.4 to 1272x672, which the publisher crops to 1200x630.

Values from SDXL Turbo's model card: guidance 0 (it was trained without classifier-free
guidance) and 1-4 steps; an image-to-image pass with ``num_inference_steps * strength >= 1``,
here 2 steps at strength 0.5. Lanczos enlarges (an upscaler model dropped into
``HOFFDESK_MODELS_DIR/upscalers/`` can be chosen instead). A preset an admin already gave a hires
pass or another size keeps it.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

TURBO_HERO = {
    "width": 912,
    "height": 480,
    "guidance": 0.0,
    "hires_scale": 1.4,
    "hires_upscaler": "lanczos",
    "hires_steps": 2,
    "hires_denoise": 0.5,
}


def turbo_presets_to_hero_size(apps: Any, schema_editor: Any) -> None:
    StylePreset = apps.get_model("generation", "StylePreset")
    for preset in StylePreset.objects.filter(model_profile="sdxl-turbo", hires_scale__isnull=True):
        if preset.width not in (None, 512) or preset.height not in (None, 512):
            continue
        for field, value in TURBO_HERO.items():
            setattr(preset, field, value)
        preset.save()


def back(apps: Any, schema_editor: Any) -> None:
    StylePreset = apps.get_model("generation", "StylePreset")
    StylePreset.objects.filter(model_profile="sdxl-turbo", hires_scale=1.4, width=912, height=480).update(
        width=None,
        height=None,
        guidance=None,
        hires_scale=None,
        hires_upscaler="",
        hires_steps=None,
        hires_denoise=None,
    )


class Migration(migrations.Migration):
    dependencies = [("generation", "0012_hires_fix")]

    operations = [migrations.RunPython(turbo_presets_to_hero_size, back)]
