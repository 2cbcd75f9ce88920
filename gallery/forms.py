from __future__ import annotations

from typing import Any

from django import forms
from django.utils.text import slugify

from gallery.models import Article
from generation.models import Candidate, GenerationRun, RegenerateMode, StylePreset
from generation.profiles import MAX_SEED, profile_choices
from generation.validation import CANDIDATE_ONLY_MODES, MAX_IMAGES


class GenerateForm(forms.Form):
    """The Generate button's options. Values are checked by ``run_validate`` against the model
    profile, so the form, the command line and the API refuse bad input the same way."""

    model = forms.ChoiceField(
        choices=lambda: [("", "The style preset's model, else the site default"), *profile_choices()],
        required=False,
    )
    prompt = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="Blank: made from the article."
    )
    count = forms.CharField(required=False, initial="4", help_text=f"1 to {MAX_IMAGES} candidates.")
    seed = forms.CharField(required=False, help_text="Blank: a random seed (always recorded).")
    width = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "model default"}))
    height = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "model default"}))
    steps = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "model default"}))
    guidance = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "model default"}))
    draft = forms.BooleanField(
        required=False,
        help_text="A fast draft to cull: half the steps and, on FLUX, a cache; Final render makes the keeper.",
    )


class WandForm(forms.Form):
    """The Magic Wand's one choice: the image style (Auto = the article's content-type preset)."""

    style = forms.ChoiceField(required=False, label="Image style")

    def __init__(self, *args: Any, styles: list[StylePreset], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["style"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(s.slug, s.name) for s in styles] or [(StylePreset.AUTO, "Auto")]


class SeriesLookForm(forms.Form):
    """An editor's change to a series' look: the seed and preset every Magic Wand run of the
    series starts from."""

    seed = forms.IntegerField(min_value=0, max_value=MAX_SEED, required=False, help_text="Blank: set by the next run.")
    preset = forms.ModelChoiceField(queryset=StylePreset.objects.all(), required=False, empty_label="(by content type)")


class RegenerateForm(forms.Form):
    """A new run from an old one, prefilled from its recipe. ``run_regenerate`` decides which
    fields a mode uses and checks the values, so the form only carries them."""

    mode = forms.ChoiceField(widget=forms.RadioSelect)
    prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    negative_prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    preset = forms.ModelChoiceField(queryset=StylePreset.objects.all(), required=False, empty_label="(the run's)")
    model = forms.ChoiceField(required=False)
    count = forms.CharField(required=False, help_text=f"1 to {MAX_IMAGES} candidates.")
    steps = forms.CharField(required=False)
    guidance = forms.CharField(required=False)
    seed = forms.CharField(required=False, help_text="Used by “Seed typed in”.")
    variation_strength = forms.CharField(
        required=False, help_text="Used by “Variations”: 0.05 (close) to 0.5 (far).", label="Variation strength"
    )

    def __init__(self, *args: Any, run: GenerationRun, candidate: Candidate | None = None, **kwargs: Any) -> None:
        modes = [(m.value, m.label) for m in RegenerateMode if _offered(m, run, candidate)]
        kwargs.setdefault(
            "initial",
            {
                "mode": RegenerateMode.COMPOSE if candidate is not None else RegenerateMode.MORE,
                "prompt": run.prompt,
                "negative_prompt": run.negative_prompt,
                "preset": run.preset_id,
                "model": run.model_profile,
                "count": run.count,
                "steps": run.steps,
                "guidance": run.guidance,
                "seed": candidate.seed if candidate is not None else run.base_seed,
                "variation_strength": "0.15",
            },
        )
        super().__init__(*args, **kwargs)
        mode_field = self.fields["mode"]
        assert isinstance(mode_field, forms.ChoiceField)
        mode_field.choices = modes
        model_field = self.fields["model"]
        assert isinstance(model_field, forms.ChoiceField)
        model_field.choices = profile_choices()


def _offered(mode: RegenerateMode, run: GenerationRun, candidate: Candidate | None) -> bool:
    """Every mode that applies: the candidate modes need a candidate, Final render a draft's."""
    if mode == RegenerateMode.FINAL:
        return candidate is not None and run.draft
    return candidate is not None or mode not in CANDIDATE_ONLY_MODES


class PublishForm(forms.Form):
    """Alt text and the focal point the hero crop keeps (fractions of width and height)."""

    alt_text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,  # publication_request says why it is needed, in words an editor reads
        help_text="Describe the image for readers who cannot see it. Required before publishing.",
    )
    focal_x = forms.FloatField(min_value=0, max_value=1, initial=0.5, widget=forms.HiddenInput)
    focal_y = forms.FloatField(min_value=0, max_value=1, initial=0.5, widget=forms.HiddenInput)


class FileForm(forms.Form):
    """Which article an Inbox candidate is filed to: its slug, typed or picked from a list."""

    article = forms.ModelChoiceField(
        queryset=Article.objects.all(),
        to_field_name="slug",
        label="Article",
        help_text="Type to search the newest articles, or type any article's slug.",
        error_messages={"invalid_choice": "No article has that slug: pick one from the list."},
        widget=forms.TextInput(
            attrs={
                "list": "articles-to-file-to",
                "autocomplete": "off",
                "placeholder": "a slug, or start typing a title",
            }
        ),
    )


class ArticleForm(forms.ModelForm):
    """New article and Edit on the dashboard. A blank slug is made from the title here too
    (the page's script proposes one as the title is typed; this is the same rule without it)."""

    class Meta:
        model = Article
        fields = ["title", "slug", "content_type", "tone", "series", "summary"]
        widgets = {"summary": forms.Textarea(attrs={"rows": 4})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["slug"].required = False
        self.fields["slug"].help_text = "Its address; blank: made from the title."
        self.fields["series"].help_text = "Articles of one series share a look (seed and preset)."

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not cleaned.get("slug") and cleaned.get("title"):
            cleaned["slug"] = slugify(cleaned["title"])[:200].strip("-")
            if not cleaned["slug"]:
                self.add_error("slug", "The title has no letters or digits to make a slug from: type one.")
        return cleaned


class ArticleImportForm(forms.Form):
    """A JSON file of articles, as ``manage.py import_articles`` reads it."""

    file = forms.FileField(
        label="JSON file", help_text="An array of objects: slug, title, summary, content_type, tone, series."
    )
