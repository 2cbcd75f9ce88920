"""The ComfyUI workflow admin (issue 17): an admin uploads an API-format workflow (JSON, or a PNG
ComfyUI saved), the mapping is proposed and editable, a broken one is refused naming the node,
and a change makes the next version. No ComfyUI server is needed: the graphs are data."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from generation.models import ComfyWorkflow, StylePreset
from generation.workflows import propose_mapping
from tests.comfyui_server import sd15_workflow

pytestmark = pytest.mark.django_db

ADD = "/admin/generation/comfyworkflow/add/"
GRAPH = sd15_workflow("model.safetensors")


def upload(name: str, data: bytes, content_type: str = "application/json") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def comfyui_png(graph: dict) -> bytes:  # type: ignore[type-arg]
    info = PngInfo()
    info.add_text("prompt", json.dumps(graph))
    info.add_text("workflow", json.dumps({"nodes": [], "links": []}))
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_it_saves_an_uploaded_json_workflow_with_its_mapping_proposed(admin_client) -> None:
    response = admin_client.post(
        ADD, {"name": "sd15", "upload": upload("wf.json", json.dumps(GRAPH).encode()), "graph": "", "mapping": ""}
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    workflow = ComfyWorkflow.objects.get()
    assert (workflow.name, workflow.version) == ("sd15", 1)
    assert workflow.graph == GRAPH
    assert workflow.mapping == propose_mapping(GRAPH)
    assert workflow.mapping["seed"] == ["5", "seed"]


def test_it_reads_the_workflow_from_a_png_comfyui_saved(admin_client) -> None:
    response = admin_client.post(
        ADD,
        {"name": "from-png", "upload": upload("x.png", comfyui_png(GRAPH), "image/png"), "graph": "", "mapping": ""},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert ComfyWorkflow.objects.get().graph == GRAPH


def test_it_refuses_a_mapping_that_names_a_node_the_graph_lacks(admin_client) -> None:
    mapping = {**propose_mapping(GRAPH), "seed": ["99", "seed"]}
    response = admin_client.post(
        ADD, {"name": "broken", "upload": "", "graph": json.dumps(GRAPH), "mapping": json.dumps(mapping)}
    )
    assert response.status_code == 200
    errors = str(response.context["adminform"].form.errors)
    assert "99" in errors and "seed" in errors, errors
    assert not ComfyWorkflow.objects.exists()


def test_it_refuses_an_upload_that_is_not_a_workflow_naming_why(admin_client) -> None:
    bad: dict[str, dict[str, dict[str, str]]] = {"1": {"inputs": {}}}
    response = admin_client.post(
        ADD, {"name": "bad", "upload": upload("wf.json", json.dumps(bad).encode()), "graph": "", "mapping": ""}
    )
    assert response.status_code == 200
    errors = str(response.context["adminform"].form.errors)
    assert "node 1" in errors and "class_type" in errors, errors
    assert not ComfyWorkflow.objects.exists()


def test_a_graph_whose_mapping_cannot_be_proposed_is_refused_naming_the_missing_field(admin_client) -> None:
    graph = {"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}}}
    response = admin_client.post(ADD, {"name": "lonely", "upload": "", "graph": json.dumps(graph), "mapping": ""})
    assert response.status_code == 200
    assert "prompt" in str(response.context["adminform"].form.errors)
    assert not ComfyWorkflow.objects.exists()


def test_saving_a_change_makes_the_next_version_and_moves_the_presets_to_it(admin_client) -> None:
    first = ComfyWorkflow.objects.create(name="sd15", graph=GRAPH, mapping=propose_mapping(GRAPH))
    preset = StylePreset.objects.create(name="Comfy", slug="comfy", comfy_workflow=first)
    mapping = {key: value for key, value in first.mapping.items() if key != "denoise"}
    response = admin_client.post(
        f"/admin/generation/comfyworkflow/{first.pk}/change/",
        {"name": "sd15", "upload": "", "graph": json.dumps(GRAPH), "mapping": json.dumps(mapping)},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert list(ComfyWorkflow.objects.order_by("version").values_list("version", flat=True)) == [1, 2]
    first.refresh_from_db()
    assert "denoise" in first.mapping  # the old version is never edited
    second = ComfyWorkflow.objects.get(version=2)
    assert second.mapping == mapping
    preset.refresh_from_db()
    assert preset.comfy_workflow == second


def test_a_preset_offers_the_workflows_in_its_admin_form(admin_client) -> None:
    ComfyWorkflow.objects.create(name="sd15", graph=GRAPH, mapping=propose_mapping(GRAPH))
    response = admin_client.get("/admin/generation/stylepreset/add/")
    assert b'name="comfy_workflow"' in response.content and b"sd15 v1" in response.content


def test_the_empty_add_form_shows_blank_boxes_not_null(admin_client) -> None:
    html = admin_client.get(ADD).content.decode()
    assert 'name="graph"' in html and 'name="mapping"' in html
    assert ">null</textarea>" not in html and ">\nnull</textarea>" not in html
