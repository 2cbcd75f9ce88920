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


# --- the server's checkpoints offered in the form (issue 17, item 5) ------------------------------
# These speak to the ComfyUI fixture: the stand-in server of tests/comfyui_server.py, which answers
# /object_info in a real ComfyUI's shape, in place of a ComfyUI box on another machine (or the real
# one at HOFFDESK_TEST_COMFYUI_URL).


def test_the_workflow_form_offers_the_checkpoints_the_comfyui_server_has(admin_client, comfyui, settings) -> None:
    settings.HOFFDESK_COMFYUI_URL = comfyui.url
    html = admin_client.get(ADD).content.decode()
    assert 'name="checkpoint"' in html
    assert f'<option value="{comfyui.checkpoint}"' in html


def test_a_checkpoint_chosen_in_the_form_is_written_into_the_graph_it_loads(admin_client, comfyui, settings) -> None:
    settings.HOFFDESK_COMFYUI_URL = comfyui.url
    graph = sd15_workflow("not-on-this-server.safetensors")
    response = admin_client.post(
        ADD, {"name": "sd15", "graph": json.dumps(graph), "mapping": "", "checkpoint": comfyui.checkpoint}
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert ComfyWorkflow.objects.get().graph["1"]["inputs"]["ckpt_name"] == comfyui.checkpoint


def test_a_workflow_loading_a_checkpoint_the_server_lacks_is_refused_naming_both(
    admin_client, comfyui, settings
) -> None:
    settings.HOFFDESK_COMFYUI_URL = comfyui.url
    graph = sd15_workflow("not-on-this-server.safetensors")
    response = admin_client.post(ADD, {"name": "sd15", "graph": json.dumps(graph), "mapping": "", "checkpoint": ""})
    assert response.status_code == 200
    errors = " ".join(response.context["adminform"].form.errors["checkpoint"])
    assert "not-on-this-server.safetensors" in errors and comfyui.checkpoint in errors
    assert not ComfyWorkflow.objects.exists()


def test_without_a_reachable_server_the_form_keeps_the_workflows_own_checkpoint_and_says_why(
    admin_client, settings
) -> None:
    settings.HOFFDESK_COMFYUI_URL = "http://127.0.0.1:9"
    response = admin_client.get(ADD)
    assert "not reachable" in response.content.decode()
    response = admin_client.post(ADD, {"name": "sd15", "graph": json.dumps(GRAPH), "mapping": "", "checkpoint": ""})
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert ComfyWorkflow.objects.get().graph["1"]["inputs"]["ckpt_name"] == "model.safetensors"
