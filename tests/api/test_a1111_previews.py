"""AUTOMATIC1111's ``/sdapi/v1/progress`` with live previews: ``current_image`` is a base64 PNG
(A1111's shape: the batch's previews in one grid) while a run is running, null otherwise, and a
run's previews are gone once it ends. A real qcluster worker makes the run."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
import requests
from PIL import Image

from generation.models import GenerationRun, RunPreview
from tests.conftest import wait_finished, wait_for


@pytest.fixture
def sdapi(live_server, token: str):  # type: ignore[no-untyped-def]
    """A requests session as Open WebUI's AUTOMATIC1111 engine makes them: HTTP Basic user:TOKEN."""
    session = requests.Session()
    session.auth = ("openwebui", token)

    def request(method: str, path: str, **kwargs: Any) -> requests.Response:
        return session.request(method, f"{live_server.url}/sdapi/v1/{path}", **kwargs)

    return request


@pytest.mark.worker
@pytest.mark.slow
def test_progress_answers_the_running_batchs_preview_and_nothing_once_it_ends(sdapi, start_worker, settings) -> None:
    worker = start_worker(HOFFDESK_PREVIEW_EVERY="2")
    assert sdapi("GET", "progress").json()["current_image"] is None  # nothing running
    settings.HOFFDESK_IMAGE_API_WAIT = 0.5
    long = sdapi(
        "POST", "txt2img", json={"prompt": "a storm", "batch_size": 2, "width": 64, "height": 64, "steps": 1000}
    )
    assert long.status_code == 504, long.text
    run = GenerationRun.objects.get(pk=long.json()["run_id"])
    seen: dict[str, Any] = {}

    def previewing() -> bool:
        seen.update(sdapi("GET", "progress").json())
        return seen["current_image"] is not None

    wait_for(previewing, 120, "a current_image in progress", worker)
    with Image.open(io.BytesIO(base64.b64decode(seen["current_image"]))) as grid:
        assert grid.format == "PNG" and grid.width > grid.height  # two 64x64 previews side by side
        assert grid.size == (128, 64)
    skipped = sdapi("GET", "progress", params={"skip_current_image": "true"}).json()
    assert skipped["current_image"] is None and skipped["state"]["job"] == f"run {run.pk}"

    assert sdapi("POST", "interrupt").json() == {}
    assert wait_finished(run, worker=worker).status == "cancelled"
    assert sdapi("GET", "progress").json()["current_image"] is None
    assert not RunPreview.objects.filter(run=run).exists()
