"""The house styles of the owner's research note, and the default hero prompt template.

Presets leave ``model_profile`` blank (the site default), so a fresh install works on the
tiny demo model; the note's model choice for each is in its description.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

PALETTE = "HoffDesk dark mode: slate, rose and indigo"

PRESETS = [
    {
        "name": "Technical deep-dive",
        "slug": "technical-deep-dive",
        "description": "Research note: FLUX.1-dev (flux-dev-nf4). Photorealistic hardware, clean compositions.",
        "prompt_suffix": "photorealistic hardware, clean composition, studio lighting, sharp focus",
        "negative_prompt": "text, watermark, logo, blurry, distorted",
        "art_direction": "photorealistic",
        "content_types": ["technical"],
    },
    {
        "name": "Tutorial",
        "slug": "tutorial",
        "description": "Research note: SDXL Turbo (sdxl-turbo). Clean, bright, diagrammatic.",
        "prompt_suffix": "clean bright diagrammatic illustration, flat shapes, clear layout",
        "negative_prompt": "photo, clutter, text, watermark",
        "art_direction": "diagrammatic illustration",
        "content_types": ["tutorial"],
    },
    {
        "name": "Personal story",
        "slug": "personal-story",
        "description": "Research note: FLUX.1-dev (flux-dev-nf4). Atmospheric, mood-matched to the narrative.",
        "prompt_suffix": "atmospheric, cinematic light, mood matched to the story",
        "negative_prompt": "text, watermark, harsh flash",
        "art_direction": "atmospheric photography",
        "content_types": ["personal"],
    },
    {
        "name": "Quick tip",
        "slug": "quick-tip",
        "description": "Research note: SDXL Turbo (sdxl-turbo). Simple, iconic, fast generation.",
        "prompt_suffix": "simple iconic symbol, bold shapes, minimal background",
        "negative_prompt": "clutter, text, watermark, photo",
        "art_direction": "iconic",
        "content_types": ["quick_tip"],
    },
]

HERO_TEMPLATE = 'Hero image for a blog article titled "{title}". {summary} Tone: {tone}. {style}'


def add_defaults(apps: Any, schema_editor: Any) -> None:
    StylePreset = apps.get_model("generation", "StylePreset")
    PromptTemplate = apps.get_model("generation", "PromptTemplate")
    for preset in PRESETS:
        StylePreset.objects.get_or_create(slug=preset["slug"], defaults={**preset, "palette": PALETTE})
    PromptTemplate.objects.get_or_create(name="hero", version=1, defaults={"text": HERO_TEMPLATE})


def remove_defaults(apps: Any, schema_editor: Any) -> None:
    apps.get_model("generation", "StylePreset").objects.filter(slug__in=[p["slug"] for p in PRESETS]).delete()
    apps.get_model("generation", "PromptTemplate").objects.filter(name="hero", version=1).delete()


class Migration(migrations.Migration):
    dependencies = [("generation", "0001_initial")]
    operations = [migrations.RunPython(add_defaults, remove_defaults)]
