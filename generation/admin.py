from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.db import transaction
from django.db.models import Max
from django.http import HttpRequest

from generation.models import Candidate, ComfyWorkflow, GenerationRun, StylePreset
from generation.validation import comfyui_server_nodes
from generation.workflows import WorkflowError, load_workflow, mapping_problems, propose_mapping, read_values


class BlankWhenEmptyJSONField(forms.JSONField):
    """A JSON text box that shows nothing, not ``null``, when there is no value yet."""

    def prepare_value(self, value: Any) -> Any:
        return "" if value is None else super().prepare_value(value)


class ComfyWorkflowForm(forms.ModelForm):
    """An API-format workflow from an upload (JSON, or a PNG ComfyUI saved) or pasted as JSON; a
    blank mapping is proposed from the common node types. Nothing that cannot run is saved: the
    errors name the field and the node (``generation.workflows.mapping_problems``)."""

    upload = forms.FileField(
        required=False,
        help_text="A workflow exported from ComfyUI in API format (.json), or a PNG ComfyUI saved. "
        "Replaces the graph below.",
    )
    graph = BlankWhenEmptyJSONField(required=False, help_text="The API-format graph (node id -> {class_type, inputs}).")
    mapping = BlankWhenEmptyJSONField(
        required=False,
        help_text='Recipe field -> [node id, input name], e.g. {"seed": ["5", "seed"]}. Blank: proposed.',
    )
    checkpoint = forms.ChoiceField(required=False, choices=[("", "The workflow's own")])

    class Meta:
        model = ComfyWorkflow
        fields = ["name", "upload", "graph", "mapping", "checkpoint"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The model files the ComfyUI server has (``/object_info``), asked once per form; None
        # when there is no server to ask, and then the workflow's own checkpoint is kept as is.
        nodes, problem = comfyui_server_nodes()
        field = self.fields["checkpoint"]
        if nodes is None:
            self.offered: list[str] | None = None
            field.help_text = f"{problem} The workflow's own checkpoint is kept."
            return
        from generation.comfyui import checkpoint_choices

        self.offered = checkpoint_choices(nodes)
        field.choices = [("", "The workflow's own"), *((name, name) for name in self.offered)]  # type: ignore[attr-defined]
        field.help_text = "The model files the ComfyUI server has; the one picked replaces the workflow's."

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        upload = cleaned.get("upload")
        graph = cleaned.get("graph")
        if upload:
            try:
                graph = load_workflow(upload.read())
            except WorkflowError as exc:
                self.add_error("upload", f"Not a usable workflow: {exc}.")
                return cleaned
        elif graph:
            try:
                graph = load_workflow(json.dumps(graph))
            except WorkflowError as exc:
                self.add_error("graph", f"Not a usable workflow: {exc}.")
                return cleaned
        else:
            if "graph" not in self.errors:
                self.add_error("graph", "Upload a workflow or paste its API-format JSON.")
            return cleaned
        mapping = cleaned.get("mapping") or propose_mapping(graph)
        if not isinstance(mapping, dict):
            self.add_error("mapping", 'The mapping must be a JSON object: {"field": ["node id", "input"]}.')
            return cleaned
        problems = mapping_problems(graph, mapping)
        if problems:
            proposed = "" if cleaned.get("mapping") else f" Proposed mapping: {json.dumps(mapping)}"
            self.add_error("mapping", [*problems, *([proposed.strip()] if proposed else [])])
            return cleaned
        if not self._checkpoint_into(graph, mapping, cleaned.get("checkpoint") or ""):
            return cleaned
        cleaned["graph"], cleaned["mapping"] = graph, mapping
        self.instance.graph, self.instance.mapping = graph, mapping
        return cleaned

    def _checkpoint_into(self, graph: dict[str, Any], mapping: dict[str, Any], chosen: str) -> bool:
        """Write the checkpoint picked into the input the mapping names; refuse (False, with the
        error on the field) a workflow that loads a model file the reachable server lacks."""
        target = mapping.get("checkpoint")
        if chosen and target:
            graph[target[0]]["inputs"][target[1]] = chosen
        if self.offered is None or not target:
            return True
        current = read_values(graph, mapping).get("checkpoint")
        if current in self.offered:
            return True
        self.add_error(
            "checkpoint",
            f"The ComfyUI server has no {current!r}, which the workflow loads; pick one it has: "
            f"{', '.join(self.offered) or 'none'}.",
        )
        return False


@admin.register(ComfyWorkflow)
class ComfyWorkflowAdmin(admin.ModelAdmin):
    """Workflows are versioned like prompt templates: saving a changed graph or mapping makes the
    next version (the old row is never edited, so old runs keep saying what they ran), and the
    presets that used the old version move to the new one."""

    form = ComfyWorkflowForm
    list_display = ["name", "version", "created_at"]
    readonly_fields = ["version", "created_at"]

    def save_model(self, request: HttpRequest, obj: ComfyWorkflow, form: forms.ModelForm, change: bool) -> None:
        with transaction.atomic():
            latest = ComfyWorkflow.objects.filter(name=obj.name).aggregate(n=Max("version"))["n"] or 0
            if not change:
                obj.version = latest + 1
                obj.save()
                return
            old = ComfyWorkflow.objects.get(pk=obj.pk)
            if (old.name, old.graph, old.mapping) == (obj.name, obj.graph, obj.mapping):
                return
            obj.pk = None
            obj.version = latest + 1
            obj.save()
            StylePreset.objects.filter(comfy_workflow=old).update(comfy_workflow=obj)


@admin.register(StylePreset)
class StylePresetAdmin(admin.ModelAdmin):
    list_display = [
        "name", "model_profile", "comfy_workflow", "image_style", "drafts_by_default", "output_size", "steps",
        "guidance", "position",
    ]  # fmt: skip
    list_filter = ["image_style", "model_profile", "drafts_by_default"]
    prepopulated_fields = {"slug": ["name"]}


class CandidateInline(admin.TabularInline):
    model = Candidate
    extra = 0
    fields = ("index", "seed", "image", "width", "height", "sha256", "review_status")
    readonly_fields = fields
    can_delete = False


@admin.register(GenerationRun)
class GenerationRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "article",
        "model_profile",
        "engine_profile",
        "status",
        "progress_step",
        "progress_total",
        "attempts",
        "queued_at",
    ]
    list_filter = ["status", "model_profile"]
    readonly_fields = [f.name for f in GenerationRun._meta.fields]
    inlines = [CandidateInline]
    search_fields = ["prompt", "article__title", "article__slug"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are made through the dashboard, the command line or the API
