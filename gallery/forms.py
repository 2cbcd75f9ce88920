from __future__ import annotations

from django import forms

from generation.profiles import profile_choices


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
    count = forms.CharField(required=False, initial="4", help_text="1 to 8 candidates.")
    seed = forms.CharField(required=False, help_text="Blank: a random seed (always recorded).")
    width = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "model default"}))
    height = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "model default"}))
    steps = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "model default"}))
    guidance = forms.CharField(required=False, widget=forms.TextInput(attrs={"placeholder": "model default"}))
