"""The ComfyUI client (generation/comfyui.py) against a ComfyUI server.

A ComfyUI server is another program on another machine: these tests talk to the stand-in in
tests/comfyui_server.py (a small local HTTP + WebSocket server written for the tests, answering in
ComfyUI's recorded shapes and order), or to a real ComfyUI when ``HOFFDESK_TEST_COMFYUI_URL`` (and
``HOFFDESK_TEST_COMFYUI_CKPT``) name one. Tests that need to kill the server or inject a failure
skip on a real one, saying so.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import uuid
from typing import Any

import pytest
from PIL import Image

from generation.comfyui import (
    Cancelled,
    ComfyUIClient,
    ComfyUIError,
    ConnectionLost,
    ExecutionFailed,
    PromptRejected,
    new_prompt_id,
)
from tests.comfyui_server import ComfyUITarget, StandInComfyUI, sd15_workflow
from tests.test_settings import load_settings


def small_workflow(target: ComfyUITarget, *, seed: int = 42, steps: int = 4, batch_size: int = 2) -> dict[str, Any]:
    graph = sd15_workflow(target.checkpoint)
    graph["4"]["inputs"].update(width=64, height=64, batch_size=batch_size)
    graph["5"]["inputs"].update(seed=seed, steps=steps)
    graph["7"]["inputs"]["filename_prefix"] = "hoffdesk-test"
    return graph


def run(client: ComfyUIClient, graph: dict[str, Any], **follow: Any) -> tuple[str, list[tuple[str, bytes]]]:
    client_id, prompt_id = uuid.uuid4().hex, new_prompt_id()
    client.submit(graph, client_id=client_id, prompt_id=prompt_id)
    client.follow(prompt_id, client_id=client_id, **follow)
    return prompt_id, client.images(prompt_id)


def wait_until_queue_empty(client: ComfyUIClient, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = client.queue()
        if not state.running and not state.pending:
            return
        time.sleep(0.05)
    raise AssertionError(f"ComfyUI's queue is not empty: {client.queue()}")


def test_it_reads_the_server_version_and_its_checkpoints(comfyui: ComfyUITarget) -> None:
    client = ComfyUIClient(comfyui.url)
    assert client.system_stats()["system"]["comfyui_version"]
    assert comfyui.checkpoint in client.checkpoints()
    assert "KSampler" in client.object_info()


def test_a_run_reports_progress_and_returns_its_pngs_after_history_is_written(comfyui: ComfyUITarget) -> None:
    client = ComfyUIClient(comfyui.url)
    progress: list[tuple[int, int]] = []
    graph = small_workflow(comfyui, seed=1234, steps=6)
    prompt_id, images = run(client, graph, on_progress=lambda value, maximum: progress.append((value, maximum)))

    assert len({value for value, _ in progress}) >= 2, progress
    assert all(maximum == 6 for _, maximum in progress)
    assert progress[-1] == (6, 6)
    assert len(images) == 2
    pngs: list[Any] = [Image.open(io.BytesIO(data)) for _, data in images]
    assert [png.size for png in pngs] == [(64, 64), (64, 64)]
    assert images[0][1] != images[1][1]  # one seed for the batch, image i differs
    assert json.loads(pngs[0].text["prompt"]) == graph  # SaveImage's chunk: it opens in ComfyUI
    history = client.history(prompt_id)
    assert history is not None and history["status"]["status_str"] == "success"
    wait_until_queue_empty(client)


def test_the_same_seed_again_gives_byte_identical_pngs(comfyui: ComfyUITarget) -> None:
    client = ComfyUIClient(comfyui.url)
    # Another seed in between, so the third run is computed again, not answered from ComfyUI's cache.
    _, first = run(client, small_workflow(comfyui, seed=7))
    _, other = run(client, small_workflow(comfyui, seed=8))
    _, again = run(client, small_workflow(comfyui, seed=7))

    assert [data for _, data in again] == [data for _, data in first]
    assert [data for _, data in other] != [data for _, data in first]
    assert {name for name, _ in again}.isdisjoint(name for name, _ in first)  # new files, not the cache


def test_cancel_mid_run_interrupts_it_and_empties_comfyuis_queue(comfyui: ComfyUITarget) -> None:
    client = ComfyUIClient(comfyui.url)
    client_id, prompt_id = uuid.uuid4().hex, new_prompt_id()
    progress: list[int] = []
    client.submit(small_workflow(comfyui, seed=99, steps=200), client_id=client_id, prompt_id=prompt_id)

    with pytest.raises(Cancelled):
        client.follow(
            prompt_id,
            client_id=client_id,
            on_progress=lambda value, maximum: progress.append(value),
            should_cancel=lambda: bool(progress),
        )

    assert progress and max(progress) < 200
    wait_until_queue_empty(client)
    history = client.history(prompt_id)
    assert history is not None and history["status"]["completed"] is False
    assert client.images(prompt_id) == []


def test_cancel_of_a_queued_prompt_deletes_it_from_comfyuis_queue(comfyui: ComfyUITarget) -> None:
    client = ComfyUIClient(comfyui.url)
    first, second = new_prompt_id(), new_prompt_id()
    client_id = uuid.uuid4().hex
    client.submit(small_workflow(comfyui, seed=5, steps=200), client_id=client_id, prompt_id=first)
    client.submit(small_workflow(comfyui, seed=6, steps=200), client_id=client_id, prompt_id=second)
    assert second in client.queue().pending

    started = time.monotonic()
    with pytest.raises(Cancelled):  # while the first prompt's frames stream past on the same client id
        client.follow(second, client_id=client_id, should_cancel=lambda: True)

    assert time.monotonic() - started < 3
    assert second not in client.queue().pending
    client.interrupt(first)
    wait_until_queue_empty(client)
    assert client.history(second) is None  # never ran


def test_a_server_killed_mid_run_raises_connection_lost(fresh_comfyui: ComfyUITarget) -> None:
    server = fresh_comfyui.server
    assert server is not None
    client = ComfyUIClient(fresh_comfyui.url, timeout=2.0)
    client_id, prompt_id = uuid.uuid4().hex, new_prompt_id()
    client.submit(small_workflow(fresh_comfyui, steps=200), client_id=client_id, prompt_id=prompt_id)
    killer: list[threading.Thread] = []

    def kill_once(value: int, maximum: int) -> None:
        if not killer:
            killer.append(threading.Thread(target=server.kill))
            killer[0].start()

    started = time.monotonic()
    with pytest.raises(ConnectionLost):
        client.follow(prompt_id, client_id=client_id, on_progress=kill_once)
    assert time.monotonic() - started < 10
    killer[0].join()

    # Restarted, ComfyUI knows nothing of the prompt: following it again says so, distinctly.
    server.restart()
    with pytest.raises(ConnectionLost, match="does not know"):
        client.follow(prompt_id, client_id=client_id)
    _, images = run(client, small_workflow(fresh_comfyui, steps=2))
    assert len(images) == 2


def test_a_dropped_websocket_raises_connection_lost_and_leaves_nothing_running(fresh_comfyui: ComfyUITarget) -> None:
    server = fresh_comfyui.server
    assert server is not None
    client = ComfyUIClient(fresh_comfyui.url)
    client_id, prompt_id = uuid.uuid4().hex, new_prompt_id()
    client.submit(small_workflow(fresh_comfyui, steps=200), client_id=client_id, prompt_id=prompt_id)

    with pytest.raises(ConnectionLost, match="dropped the WebSocket"):
        client.follow(prompt_id, client_id=client_id, on_progress=lambda value, maximum: server.drop_websockets())

    # Nobody follows the prompt any more: it must not run on, unowned.
    wait_until_queue_empty(client, seconds=3)
    history = client.history(prompt_id)
    assert history is not None and history["status"]["completed"] is False


def test_an_invalid_graph_is_refused_naming_the_node(comfyui: ComfyUITarget) -> None:
    client = ComfyUIClient(comfyui.url)
    graph = small_workflow(comfyui)
    del graph["5"]["inputs"]["seed"]
    with pytest.raises(PromptRejected) as missing:
        client.submit(graph, client_id="c", prompt_id=new_prompt_id())
    assert "5" in missing.value.node_errors
    assert "node 5 (KSampler)" in str(missing.value) and "seed" in str(missing.value)

    graph = small_workflow(comfyui)
    graph["1"]["inputs"]["ckpt_name"] = "no-such-model.safetensors"
    with pytest.raises(PromptRejected, match=r"node 1 \(CheckpointLoaderSimple\).*no-such-model"):
        client.submit(graph, client_id="c", prompt_id=new_prompt_id())

    graph = small_workflow(comfyui)
    graph["8"] = {"class_type": "NoSuchNode", "inputs": {}}
    with pytest.raises(PromptRejected, match=r"NoSuchNode.*#8"):
        client.submit(graph, client_id="c", prompt_id=new_prompt_id())


def test_an_execution_error_raises_with_comfyuis_message(comfyui: ComfyUITarget) -> None:
    comfyui.needs_stand_in("a real ComfyUI cannot be told to fail a node")
    assert comfyui.server is not None
    client = ComfyUIClient(comfyui.url)
    comfyui.server.fail_next_with = "CUDA out of memory (stand-in)"
    with pytest.raises(ExecutionFailed, match=r"node 5 \(KSampler\).*CUDA out of memory") as failed:
        run(client, small_workflow(comfyui, seed=31337))
    assert failed.value.node_id == "5"
    wait_until_queue_empty(client)


def test_the_token_is_sent_as_a_bearer_header() -> None:
    # A stand-in behind an "auth proxy": a ComfyUI box elsewhere that wants a bearer token.
    server = StandInComfyUI(token="s3cret").start()
    try:
        with pytest.raises(ComfyUIError, match="401") as refused:
            ComfyUIClient(server.url).system_stats()
        assert "s3cret" not in str(refused.value)
        client = ComfyUIClient(server.url, token="s3cret")
        assert client.system_stats()["system"]["comfyui_version"]
        graph = sd15_workflow("stand-in-sd15.safetensors")
        graph["4"]["inputs"].update(width=64, height=64, batch_size=1)
        _, images = run(client, graph)
        assert len(images) == 1
    finally:
        server.kill()


def test_an_unreachable_server_raises_connection_lost() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionLost):
        ComfyUIClient(f"http://127.0.0.1:{port}").queue()


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as sock:  # accepts connections (the backlog) but never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        started = time.monotonic()
        with pytest.raises(ConnectionLost):
            ComfyUIClient(f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=0.5).system_stats()
        assert time.monotonic() - started < 5


def test_the_server_comes_from_the_settings(settings) -> None:
    settings.HOFFDESK_COMFYUI_URL = ""
    assert ComfyUIClient.from_settings() is None
    settings.HOFFDESK_COMFYUI_URL, settings.HOFFDESK_COMFYUI_TOKEN = "http://gaming-pc:8188/comfy", "t0ken"
    client = ComfyUIClient.from_settings()
    assert client is not None and (client.base_url, client.token) == ("http://gaming-pc:8188/comfy", "t0ken")


def test_a_comfyui_url_without_its_scheme_is_refused_naming_the_variable(tmp_path) -> None:
    refused = load_settings(tmp_path, HOFFDESK_COMFYUI_URL="gaming-pc:8188")
    assert refused.returncode != 0 and "HOFFDESK_COMFYUI_URL must start with http://" in refused.stderr
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    assert (
        load_settings(
            tmp_path, HOFFDESK_COMFYUI_URL="http://gaming-pc:8188/", HOFFDESK_COMFYUI_TOKEN_FILE=str(token)
        ).returncode
        == 0
    )
