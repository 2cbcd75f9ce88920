"""The owner's preset table, with real models, and the four image styles beside the Magic Wand.

Content-type presets (from 0002) get their model from the research note: technical deep-dives and
personal stories on FLUX.1-dev in nf4, tutorials and quick tips on SDXL Turbo. A preset an admin
already gave a model keeps it. Every preset uses the dark-mode palette. In demo mode (no weights
installed) the real models run on tiny stand-ins of their family, so a fresh install still works.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

PALETTE = "dark mode palette of slate, rose and indigo"

# FLUX heroes are made at the size the publisher's 1200x630 hero crop needs (1216x640, a multiple
# of 16); SDXL Turbo stays at its native 512 px, for thumbnails and quick tips.
HERO_SIZE = {"width": 1216, "height": 640}

CONTENT_TYPE_MODELS = {
    "technical-deep-dive": "flux-dev-nf4",
    "tutorial": "sdxl-turbo",
    "personal-story": "flux-dev-nf4",
    "quick-tip": "sdxl-turbo",
}

IMAGE_STYLES = [
    {
        "name": "Auto",
        "slug": "auto",
        "description": "The article's content-type preset.",
        "position": 0,
    },
    {
        "name": "Technical",
        "slug": "technical",
        "description": "Photorealistic hardware, clean compositions (FLUX.1-dev).",
        "model_profile": "flux-dev-nf4",
        **HERO_SIZE,
        "prompt_suffix": "photorealistic hardware, clean composition, studio lighting, sharp focus",
        "negative_prompt": "text, watermark, logo, blurry, distorted",
        "art_direction": "photorealistic",
        "position": 1,
    },
    {
        "name": "Atmospheric",
        "slug": "atmospheric",
        "description": "Atmospheric, cinematic, mood-matched (FLUX.1-dev).",
        "model_profile": "flux-dev-nf4",
        **HERO_SIZE,
        "prompt_suffix": "atmospheric, cinematic light, soft haze, mood matched to the story",
        "negative_prompt": "text, watermark, harsh flash",
        "art_direction": "atmospheric photography",
        "position": 2,
    },
    {
        "name": "Minimal",
        "slug": "minimal",
        "description": "Simple, iconic, lots of space (SDXL Turbo).",
        "model_profile": "sdxl-turbo",
        "prompt_suffix": "minimal, simple iconic shape, generous negative space, flat background",
        "negative_prompt": "clutter, text, watermark, photo",
        "art_direction": "minimal iconic",
        "position": 3,
    },
]


# Version 2 of the hero template also names the art direction and the palette.
HERO_TEMPLATE_V2 = (
    'Hero image for a blog article titled "{title}". {summary} Tone: {tone}. {style}. {art_direction}, {palette}.'
)


def add_owner_presets(apps: Any, schema_editor: Any) -> None:
    StylePreset = apps.get_model("generation", "StylePreset")
    PromptTemplate = apps.get_model("generation", "PromptTemplate")
    if not PromptTemplate.objects.filter(name="hero", version__gte=2).exists():
        PromptTemplate.objects.create(name="hero", version=2, text=HERO_TEMPLATE_V2)
    for position, (slug, model) in enumerate(CONTENT_TYPE_MODELS.items(), start=10):
        preset = StylePreset.objects.filter(slug=slug).first()
        if preset is None:
            continue
        if not preset.model_profile:
            preset.model_profile = model
            if model.startswith("flux") and not preset.width and not preset.height:
                preset.width, preset.height = HERO_SIZE["width"], HERO_SIZE["height"]
        preset.palette = PALETTE
        preset.position = position
        preset.description = preset.description.replace("Research note: ", "")
        preset.save()
    for style in IMAGE_STYLES:
        StylePreset.objects.get_or_create(
            slug=style["slug"], defaults={**style, "palette": PALETTE, "image_style": True}
        )


def remove_owner_presets(apps: Any, schema_editor: Any) -> None:
    StylePreset = apps.get_model("generation", "StylePreset")
    apps.get_model("generation", "PromptTemplate").objects.filter(
        name="hero", version=2, text=HERO_TEMPLATE_V2
    ).delete()
    StylePreset.objects.filter(slug__in=[s["slug"] for s in IMAGE_STYLES]).delete()
    StylePreset.objects.filter(slug__in=CONTENT_TYPE_MODELS).update(model_profile="")


class Migration(migrations.Migration):
    dependencies = [("generation", "0007_run_engine_profile_and_prompt_fields")]
    operations = [migrations.RunPython(add_owner_presets, remove_owner_presets)]
