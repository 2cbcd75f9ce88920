"""A stand-in for a ComfyUI server on another machine, for the ComfyUI engine's protocol tests.

ComfyUI is another program on another box (the owner's Gaming PC), as an Ollama server is: CI
has none and its source cannot be vendored, so these tests talk to this small HTTP + WebSocket
server, written for them, that answers in ComfyUI's real shapes and order. The template is one
real run's WebSocket frames (``shared/comfyui/ws-events-one-run.json``) and the behaviours
measured against a real ComfyUI v0.33 (docs/design.md, "ComfyUI as an engine"):

- ``POST /prompt`` validates the graph (unknown ``class_type``, a missing required input, a
  checkpoint the server does not have, no output node) and answers 400 with ComfyUI's ``error``
  and ``node_errors``; else ``{"prompt_id", "number", "node_errors": {}}``, accepting a
  client-chosen ``prompt_id``.
- One prompt runs at a time. Its frames go to the WebSocket of the ``client_id`` it was sent
  with: ``execution_start``, ``execution_cached``, per node ``progress_state`` + ``executing``,
  the sampler's ``progress`` per step (``step_delay`` seconds apart, so progress and cancel can
  be seen), ``executed`` from SaveImage, then ``execution_success``; ``/history/{id}`` is written
  only after that (``history_delay`` later, as the real one, so a client that reads it on
  ``execution_success`` finds nothing), and last ``executing {node: null}``.
- ``POST /interrupt {"prompt_id"}`` stops the running prompt at the next step
  (``execution_interrupted``, history ``status_str`` "error"); naming another prompt does
  nothing. ``POST /queue {"delete": [...]}`` drops pending prompts.
- Images are noise from a hash of the graph upstream of SaveImage (seed, prompt text, size...):
  one seed for a whole batch, image i of a batch differs; the same recipe gives byte-identical
  PNGs. Each PNG carries the graph as a ``prompt`` text chunk and each ``extra_pnginfo`` key as
  another, as SaveImage does. An identical resubmission is answered from cache
  (``execution_cached`` lists every node, no new file), as the real one.
- ``drop_websockets()`` closes every WebSocket while the server runs on (a network blip);
  ``kill()`` stops answering at once (the listening socket and every WebSocket closed, the
  running prompt abandoned); ``restart()`` comes back on the same port with no queue and no
  history, as a restarted ComfyUI does (output files stay, as on disk).
- ``token``: when set, every request without ``Authorization: Bearer <token>`` gets 401, as
  behind an auth proxy.

A test talks to a real ComfyUI instead when ``HOFFDESK_TEST_COMFYUI_URL`` is set (see the
``comfyui`` fixture).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import socket
import struct
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

SHARED_COMFYUI = Path(__file__).resolve().parents[2] / "shared" / "comfyui"
STAND_IN_CHECKPOINT = "stand-in-sd15.safetensors"
STAND_IN_VERSION = "0.3.99-stand-in"
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _combo(choices: list[str]) -> list[Any]:
    return [choices, {}]


# The node types the stand-in knows, in /object_info's shape (required inputs only matter here).
def _object_info(checkpoints: list[str]) -> dict[str, Any]:
    samplers = ["euler", "euler_ancestral", "dpmpp_2m", "ddim"]
    schedulers = ["normal", "karras", "sgm_uniform", "simple"]
    nodes: dict[str, tuple[dict[str, Any], list[str], str, bool]] = {
        "CheckpointLoaderSimple": ({"ckpt_name": _combo(checkpoints)}, ["MODEL", "CLIP", "VAE"], "loaders", False),
        "UNETLoader": (
            {"unet_name": _combo(checkpoints), "weight_dtype": _combo(["default", "fp8_e4m3fn"])},
            ["MODEL"],
            "advanced/loaders",
            False,
        ),
        "CLIPTextEncode": (
            {"text": ["STRING", {"multiline": True}], "clip": ["CLIP"]},
            ["CONDITIONING"],
            "conditioning",
            False,
        ),
        "EmptyLatentImage": (
            {
                "width": ["INT", {"default": 512}],
                "height": ["INT", {"default": 512}],
                "batch_size": ["INT", {"default": 1}],
            },
            ["LATENT"],
            "latent",
            False,
        ),
        "EmptySD3LatentImage": (
            {
                "width": ["INT", {"default": 1024}],
                "height": ["INT", {"default": 1024}],
                "batch_size": ["INT", {"default": 1}],
            },
            ["LATENT"],
            "latent/sd3",
            False,
        ),
        "KSampler": (
            {
                "model": ["MODEL"],
                "seed": ["INT", {"default": 0}],
                "steps": ["INT", {"default": 20}],
                "cfg": ["FLOAT", {"default": 8.0}],
                "sampler_name": _combo(samplers),
                "scheduler": _combo(schedulers),
                "positive": ["CONDITIONING"],
                "negative": ["CONDITIONING"],
                "latent_image": ["LATENT"],
                "denoise": ["FLOAT", {"default": 1.0}],
            },
            ["LATENT"],
            "sampling",
            False,
        ),
        "KSamplerAdvanced": (
            {
                "model": ["MODEL"],
                "add_noise": _combo(["enable", "disable"]),
                "noise_seed": ["INT", {"default": 0}],
                "steps": ["INT", {"default": 20}],
                "cfg": ["FLOAT", {"default": 8.0}],
                "sampler_name": _combo(samplers),
                "scheduler": _combo(schedulers),
                "positive": ["CONDITIONING"],
                "negative": ["CONDITIONING"],
                "latent_image": ["LATENT"],
                "start_at_step": ["INT", {"default": 0}],
                "end_at_step": ["INT", {"default": 10000}],
                "return_with_leftover_noise": _combo(["disable", "enable"]),
            },
            ["LATENT"],
            "sampling",
            False,
        ),
        "VAEDecode": ({"samples": ["LATENT"], "vae": ["VAE"]}, ["IMAGE"], "latent", False),
        "SaveImage": ({"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "ComfyUI"}]}, [], "image", True),
    }
    return {
        name: {
            "input": {"required": required},
            "input_order": {"required": list(required)},
            "output": outputs,
            "output_is_list": [False] * len(outputs),
            "output_name": outputs,
            "name": name,
            "display_name": name,
            "description": "",
            "python_module": "nodes",
            "category": category,
            "output_node": output_node,
        }
        for name, (required, outputs, category, output_node) in nodes.items()
    }


SAMPLERS = {"KSampler", "KSamplerAdvanced"}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_link(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


# --- WebSocket (RFC 6455), the little a server needs: handshake, text frames out, frames in ------


def _ws_frame(opcode: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, length)
    return head + payload


def _read_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _ws_read(sock: socket.socket) -> tuple[int, bytes]:
    first, second = _read_exact(sock, 2)
    opcode, length = first & 0x0F, second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", _read_exact(sock, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", _read_exact(sock, 8))
    mask = _read_exact(sock, 4) if second & 0x80 else b"\0\0\0\0"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(_read_exact(sock, length)))
    return opcode, payload


@dataclass
class _Socket:
    """One WebSocket connection; frames are written under a lock (the runner thread and the
    connection's own thread both write)."""

    sock: socket.socket
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send_json(self, message: dict[str, Any]) -> None:
        frame = _ws_frame(0x1, json.dumps(message).encode())
        with self.lock:
            try:
                self.sock.sendall(frame)
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class _Interrupted(Exception):
    pass


class _Killed(Exception):
    pass


@dataclass
class _Prompt:
    number: int
    prompt_id: str
    graph: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    def queue_row(self) -> list[Any]:
        return [self.number, self.prompt_id, self.graph, self.extra_data, self.outputs]


class StandInComfyUI:
    """The server; ``start()`` it, point a client at ``url``."""

    def __init__(
        self,
        *,
        step_delay: float = 0.05,
        history_delay: float = 0.2,
        checkpoints: tuple[str, ...] = (STAND_IN_CHECKPOINT, "other-model.safetensors"),
        token: str | None = None,
    ) -> None:
        self.step_delay = step_delay
        self.history_delay = history_delay
        self.checkpoints = list(checkpoints)
        self.token = token
        self.port = 0
        self.files: dict[tuple[str, str], bytes] = {}  # (subfolder, filename) -> PNG: the disk
        self.counters: dict[str, int] = {}
        # One-shot knob: the next sampler to run fails with this message (execution_error).
        self.fail_next_with: str | None = None
        self.requests: list[tuple[str, str]] = []  # (method, path) as received
        self._httpd: ThreadingHTTPServer | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StandInComfyUI:
        self._fresh_state()
        stand_in = self

        class Handler(_Handler):
            server_state = stand_in

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, name="comfyui-stand-in-http", daemon=True).start()
        self._runner = threading.Thread(target=self._run_queue, name="comfyui-stand-in-runner", daemon=True)
        self._runner.start()
        return self

    def kill(self) -> None:
        """Stop answering now: no more frames, every WebSocket closed, the port refused."""
        with self._cond:
            self._dead = True
            self._cond.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        for ws in list(self._sockets.values()) + list(self._all_sockets):
            ws.close()
        self._runner.join(timeout=5)

    def drop_websockets(self) -> None:
        """A network blip: every WebSocket closes, the server itself runs on."""
        with self._cond:
            sockets = list(self._all_sockets)
        for ws in sockets:
            ws.close()

    def restart(self) -> None:
        """A restarted ComfyUI on the same port: empty queue, empty history, files kept."""
        if self._httpd is not None:
            self.kill()
        self.start()

    stop = kill

    def _fresh_state(self) -> None:
        self._cond = threading.Condition()
        self._dead = False
        self._pending: list[_Prompt] = []
        self._running: _Prompt | None = None
        self._interrupt = False
        self._number = 0
        self._history: dict[str, dict[str, Any]] = {}
        self._sockets: dict[str, _Socket] = {}  # client_id -> the latest socket (as ComfyUI)
        self._all_sockets: list[_Socket] = []
        self._running_node: str | None = None
        self._last_graph: dict[str, Any] | None = None
        self._last_outputs: dict[str, Any] = {}

    # --- what the handlers call -------------------------------------------------------------

    def authorised(self, header: str | None) -> bool:
        return self.token is None or header == f"Bearer {self.token}"

    def submit(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        graph = body.get("prompt")
        if not isinstance(graph, dict):
            invalid = {"type": "invalid_prompt", "message": "Prompt is not a dict", "details": "", "extra_info": {}}
            return 400, {"error": invalid, "node_errors": {}}
        error, node_errors, outputs = self._validate(graph)
        if error is not None:
            return 400, {"error": error, "node_errors": node_errors}
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        extra_data = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        with self._cond:
            self._number += 1
            number = self._number
            self._pending.append(_Prompt(number, prompt_id, graph, extra_data, outputs))
            self._cond.notify_all()
        self._broadcast_status()
        return 200, {"prompt_id": prompt_id, "number": number, "node_errors": {}}

    def _validate(self, graph: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any], list[str]]:
        """ComfyUI's validate_prompt, the cases the tests need, in its answer's shapes."""
        info = _object_info(self.checkpoints)
        for node_id, node in graph.items():
            class_type = node.get("class_type") if isinstance(node, dict) else None
            if class_type not in info:
                error = {
                    "type": "invalid_prompt",
                    "message": f"Cannot execute because node {class_type} does not exist.",
                    "details": f"Node ID '#{node_id}'",
                    "extra_info": {},
                }
                return error, {}, []
        outputs = [node_id for node_id, node in graph.items() if info[node["class_type"]]["output_node"]]
        if not outputs:
            error = {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}}
            return error, {}, []
        node_errors: dict[str, Any] = {}
        for node_id, node in graph.items():
            required = info[node["class_type"]]["input"]["required"]
            inputs = node.get("inputs", {})
            errors = []
            for name, spec in required.items():
                if name not in inputs:
                    errors.append(
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": name,
                            "extra_info": {"input_name": name},
                        }
                    )
                elif _is_link(inputs[name]):
                    if inputs[name][0] not in graph:
                        errors.append(
                            {
                                "type": "bad_linked_input",
                                "message": "Bad linked input, must be a length-2 list of [string, int]",
                                "details": f"{name}: {inputs[name]}",
                                "extra_info": {"input_name": name},
                            }
                        )
                elif isinstance(spec[0], list) and inputs[name] not in spec[0]:
                    errors.append(
                        {
                            "type": "value_not_in_list",
                            "message": "Value not in list",
                            "details": f"{name}: '{inputs[name]}' not in {spec[0]}",
                            "extra_info": {"input_name": name, "received_value": inputs[name]},
                        }
                    )
            if errors:
                node_errors[node_id] = {
                    "errors": errors,
                    "dependent_outputs": outputs,
                    "class_type": node["class_type"],
                }
        if node_errors:
            error = {
                "type": "prompt_outputs_failed_validation",
                "message": "Prompt outputs failed validation",
                "details": "",
                "extra_info": {},
            }
            return error, node_errors, []
        return None, {}, outputs

    def queue_state(self) -> dict[str, Any]:
        with self._cond:
            running = [self._running.queue_row()] if self._running else []
            return {"queue_running": running, "queue_pending": [p.queue_row() for p in self._pending]}

    def delete(self, prompt_ids: list[str]) -> None:
        with self._cond:
            self._pending = [p for p in self._pending if p.prompt_id not in prompt_ids]
        self._broadcast_status()

    def clear(self) -> None:
        with self._cond:
            self._pending = []
        self._broadcast_status()

    def interrupt(self, prompt_id: str | None) -> None:
        with self._cond:
            if self._running is not None and prompt_id in (None, self._running.prompt_id):
                self._interrupt = True

    def history(self, prompt_id: str | None) -> dict[str, Any]:
        with self._cond:
            if prompt_id is None:
                return dict(self._history)
            return {prompt_id: self._history[prompt_id]} if prompt_id in self._history else {}

    def connect(self, client_id: str, ws: _Socket) -> None:
        with self._cond:
            self._sockets[client_id] = ws
            self._all_sockets.append(ws)
            queue_remaining = len(self._pending) + (1 if self._running else 0)
            running, node = self._running, self._running_node
        ws.send_json(
            {
                "type": "status",
                "data": {"status": {"exec_info": {"queue_remaining": queue_remaining}}, "sid": client_id},
            }
        )
        if running is not None and running.extra_data.get("client_id") == client_id and node is not None:
            ws.send_json(
                {"type": "executing", "data": {"node": node, "display_node": node, "prompt_id": running.prompt_id}}
            )

    def disconnect(self, client_id: str, ws: _Socket) -> None:
        with self._cond:
            if self._sockets.get(client_id) is ws:
                del self._sockets[client_id]
            if ws in self._all_sockets:
                self._all_sockets.remove(ws)

    def system_stats(self) -> dict[str, Any]:
        return {
            "system": {
                "os": "posix",
                "ram_total": 2**34,
                "ram_free": 2**33,
                "comfyui_version": STAND_IN_VERSION,
                "python_version": "3.11",
                "pytorch_version": "none (stand-in)",
                "embedded_python": False,
                "argv": ["main.py", "--cpu"],
            },
            "devices": [{"name": "cpu", "type": "cpu", "index": None, "vram_total": 2**34, "vram_free": 2**33}],
        }

    def object_info(self, node_class: str | None) -> dict[str, Any]:
        info = _object_info(self.checkpoints)
        if node_class is None:
            return info
        return {node_class: info[node_class]} if node_class in info else {}

    # --- the run ------------------------------------------------------------------------------

    def _send(self, prompt: _Prompt, message_type: str, data: dict[str, Any]) -> None:
        if self._dead:
            raise _Killed
        ws = self._sockets.get(prompt.extra_data.get("client_id", ""))
        if ws is not None:
            ws.send_json({"type": message_type, "data": data})

    def _broadcast_status(self) -> None:
        with self._cond:
            remaining = len(self._pending) + (1 if self._running else 0)
            sockets = list(self._sockets.values())
        for ws in sockets:
            ws.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": remaining}}}})

    def _run_queue(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._dead:
                    self._cond.wait()
                if self._dead:
                    return
                prompt = self._pending.pop(0)
                self._running, self._interrupt = prompt, False
            try:
                self._execute(prompt)
            except _Killed:
                return
            with self._cond:
                self._running = None
                self._running_node = None
            self._broadcast_status()

    def _order(self, graph: dict[str, Any], outputs: list[str]) -> list[str]:
        order: list[str] = []

        def visit(node_id: str) -> None:
            if node_id in order:
                return
            for value in graph[node_id]["inputs"].values():
                if _is_link(value):
                    visit(value[0])
            order.append(node_id)

        for node_id in outputs:
            visit(node_id)
        return order

    def _execute(self, prompt: _Prompt) -> None:
        pid, graph = prompt.prompt_id, prompt.graph
        messages: list[list[Any]] = []

        def send(message_type: str, data: dict[str, Any]) -> None:
            data = {**data, "prompt_id": pid} if "prompt_id" not in data else data
            if message_type in (
                "execution_start",
                "execution_cached",
                "execution_success",
                "execution_interrupted",
                "execution_error",
            ):
                data["timestamp"] = _now_ms()
                messages.append([message_type, data])
            self._send(prompt, message_type, data)

        order = self._order(graph, prompt.outputs)
        cached = graph == self._last_graph
        send("execution_start", {"prompt_id": pid})
        send("execution_cached", {"nodes": list(order) if cached else [], "prompt_id": pid})
        outputs: dict[str, Any] = dict(self._last_outputs) if cached else {}
        for node_id in outputs:  # a cached output node's result is sent again, as the real one does
            send("executed", {"node": node_id, "display_node": node_id, "output": outputs[node_id], "prompt_id": pid})
        states: dict[str, dict[str, Any]] = {}
        executed: list[str] = []
        try:
            for node_id in [] if cached else order:
                node = graph[node_id]
                self._running_node = node_id
                self._node_state(send, states, pid, node_id, 0.0, 1.0, "running")
                send("executing", {"node": node_id, "display_node": node_id, "prompt_id": pid})
                if node["class_type"] in SAMPLERS:
                    self._sample(send, states, pid, node_id, node)
                if node["class_type"] == "SaveImage":
                    images = self._save(prompt, node_id)
                    outputs[node_id] = {"images": images}
                self._node_state(
                    send, states, pid, node_id, states[node_id]["value"], states[node_id]["max"], "finished"
                )
                if node_id in outputs:
                    send(
                        "executed",
                        {"node": node_id, "display_node": node_id, "output": outputs[node_id], "prompt_id": pid},
                    )
                executed.append(node_id)
        except _Interrupted:
            node = graph[self._running_node or ""]
            send(
                "execution_interrupted",
                {
                    "prompt_id": pid,
                    "node_id": self._running_node,
                    "node_type": node["class_type"],
                    "executed": executed,
                },
            )
            self._finish(prompt, {}, "error", messages)
            return
        except RuntimeError as exc:
            node = graph[self._running_node or ""]
            send(
                "execution_error",
                {
                    "prompt_id": pid,
                    "node_id": self._running_node,
                    "node_type": node["class_type"],
                    "executed": executed,
                    "exception_message": str(exc),
                    "exception_type": "RuntimeError",
                    "traceback": [f"RuntimeError: {exc}\n"],
                    "current_inputs": {},
                    "current_outputs": {},
                },
            )
            self._finish(prompt, {}, "error", messages)
            return
        self._last_graph, self._last_outputs = graph, outputs
        send("execution_success", {"prompt_id": pid})
        self._finish(prompt, outputs, "success", messages)

    def _finish(self, prompt: _Prompt, outputs: dict[str, Any], status: str, messages: list[list[Any]]) -> None:
        # The real server writes /history a moment after execution_success, then says executing null.
        time.sleep(self.history_delay)
        if self._dead:
            raise _Killed
        with self._cond:
            self._history[prompt.prompt_id] = {
                "prompt": prompt.queue_row(),
                "outputs": outputs,
                "status": {"status_str": status, "completed": status == "success", "messages": messages},
                "meta": {node: {"node_id": node, "display_node": node} for node in outputs},
            }
            self._running = None
        self._send(prompt, "executing", {"node": None, "prompt_id": prompt.prompt_id})

    def _node_state(
        self, send: Any, states: dict[str, Any], pid: str, node_id: str, value: float, maximum: float, state: str
    ) -> None:
        states[node_id] = {
            "value": value,
            "max": maximum,
            "state": state,
            "node_id": node_id,
            "prompt_id": pid,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }
        send("progress_state", {"prompt_id": pid, "nodes": {key: dict(value) for key, value in states.items()}})

    def _sample(self, send: Any, states: dict[str, Any], pid: str, node_id: str, node: dict[str, Any]) -> None:
        steps = int(node["inputs"]["steps"])
        for step in range(1, steps + 1):
            time.sleep(self.step_delay)
            if self._dead:
                raise _Killed
            if self._interrupt:
                raise _Interrupted
            if self.fail_next_with is not None:
                message, self.fail_next_with = self.fail_next_with, None
                raise RuntimeError(message)
            self._node_state(send, states, pid, node_id, step, steps, "running")
            send("progress", {"value": step, "max": steps, "prompt_id": pid, "node": node_id})

    def _signature(self, graph: dict[str, Any], node_id: str) -> str:
        node = graph[node_id]
        parts = [node["class_type"]]
        for name in sorted(node["inputs"]):
            value = node["inputs"][name]
            parts.append(
                f"{name}={self._signature(graph, value[0])}:{value[1]}" if _is_link(value) else f"{name}={value!r}"
            )
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def _latent(self, graph: dict[str, Any], node_id: str) -> tuple[int, int, int]:
        node = graph[node_id]
        if {"width", "height", "batch_size"} <= node["inputs"].keys():
            return int(node["inputs"]["width"]), int(node["inputs"]["height"]), int(node["inputs"]["batch_size"])
        for value in node["inputs"].values():
            if _is_link(value):
                found = self._latent(graph, value[0])
                if found[0]:
                    return found
        return 0, 0, 0

    def _save(self, prompt: _Prompt, node_id: str) -> list[dict[str, str]]:
        graph = prompt.graph
        source = graph[node_id]["inputs"]["images"]
        signature = self._signature(graph, source[0])
        width, height, batch = self._latent(graph, source[0])
        # One seed for the whole batch (noise drawn for all of it at once): image i differs.
        noise = random.Random(signature).randbytes(width * height * 3 * batch)
        prefix = str(graph[node_id]["inputs"]["filename_prefix"])
        images = []
        for index in range(batch):
            info = PngInfo()
            info.add_text("prompt", json.dumps(graph))
            for key, value in prompt.extra_data.get("extra_pnginfo", {}).items():
                info.add_text(key, json.dumps(value))
            size = width * height * 3
            image = Image.frombytes("RGB", (width, height), noise[index * size : (index + 1) * size])
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", pnginfo=info, compress_level=4)
            self.counters[prefix] = self.counters.get(prefix, 0) + 1
            filename = f"{prefix}_{self.counters[prefix]:05}_.png"
            self.files[("", filename)] = buffer.getvalue()
            images.append({"filename": filename, "subfolder": "", "type": "output"})
        return images


class _Handler(BaseHTTPRequestHandler):
    server_state: StandInComfyUI

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _refuse_unless_authorised(self) -> bool:
        if self.server_state.authorised(self.headers.get("Authorization")):
            return False
        self._json(401, {"error": "unauthorised"})
        return True

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self) -> None:
        state = self.server_state
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        state.requests.append(("GET", url.path))
        if self._refuse_unless_authorised():
            return
        if url.path == "/ws":
            self._websocket(query.get("clientId") or uuid.uuid4().hex)
        elif url.path == "/system_stats":
            self._json(200, state.system_stats())
        elif url.path == "/queue":
            self._json(200, state.queue_state())
        elif url.path == "/object_info" or url.path.startswith("/object_info/"):
            self._json(200, state.object_info(url.path.removeprefix("/object_info").strip("/") or None))
        elif url.path == "/history" or url.path.startswith("/history/"):
            self._json(200, state.history(url.path.removeprefix("/history").strip("/") or None))
        elif url.path == "/view":
            data = state.files.get((query.get("subfolder", ""), query.get("filename", "")))
            if data is None or query.get("type", "output") != "output":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        state = self.server_state
        path = urllib.parse.urlsplit(self.path).path
        state.requests.append(("POST", path))
        if self._refuse_unless_authorised():
            return
        body = self._body()
        if path == "/prompt":
            status, answer = state.submit(body)
            self._json(status, answer)
        elif path == "/interrupt":
            state.interrupt(body.get("prompt_id"))
            self._empty()
        elif path == "/queue":
            if body.get("clear"):
                state.clear()
            state.delete([str(i) for i in body.get("delete", [])])
            self._empty()
        elif path == "/free":
            self._empty()
        else:
            self.send_error(404)

    def _empty(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _websocket(self, client_id: str) -> None:
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        self.wfile.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        self.wfile.flush()
        self.close_connection = True
        ws = _Socket(self.connection)
        self.server_state.connect(client_id, ws)
        try:
            while True:
                opcode, payload = _ws_read(self.connection)
                if opcode == 0x8:  # close: answer it and end
                    with ws.lock:
                        self.connection.sendall(_ws_frame(0x8, payload[:2]))
                    break
                if opcode == 0x9:  # ping
                    with ws.lock:
                        self.connection.sendall(_ws_frame(0xA, payload))
        except (ConnectionError, OSError):
            pass
        finally:
            self.server_state.disconnect(client_id, ws)


# --- fixtures ---------------------------------------------------------------------------------


@dataclass
class ComfyUITarget:
    """What the tests run against: the stand-in (``server`` set) or a real ComfyUI at ``url``."""

    url: str
    checkpoint: str
    server: StandInComfyUI | None

    @property
    def real(self) -> bool:
        return self.server is None

    def needs_stand_in(self, why: str) -> None:
        if self.real:
            pytest.skip(f"needs the stand-in server: {why}")


def sd15_workflow(checkpoint: str) -> dict[str, Any]:
    """The API-format workflow a real ComfyUI ran (shared/comfyui/api-workflow-sd15.json, vendored
    in the test as data), with ``checkpoint`` loaded."""
    graph: dict[str, Any] = json.loads(REAL_WORKFLOW_JSON)
    graph["1"]["inputs"]["ckpt_name"] = checkpoint
    return graph


# shared/comfyui/api-workflow-sd15.json verbatim (compacted), so the tests do not need ../shared.
REAL_WORKFLOW_JSON = json.dumps(
    {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red apple on a table", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 256, "height": 256, "batch_size": 2}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "seed": 42,
                "steps": 4,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "smoke"}},
    }
)


def _target_from_environment() -> ComfyUITarget | None:
    url = os.environ.get("HOFFDESK_TEST_COMFYUI_URL", "").rstrip("/")
    if not url:
        return None
    return ComfyUITarget(url=url, checkpoint=os.environ.get("HOFFDESK_TEST_COMFYUI_CKPT", ""), server=None)


@pytest.fixture(scope="session")
def comfyui() -> Iterator[ComfyUITarget]:
    """A real ComfyUI when ``HOFFDESK_TEST_COMFYUI_URL`` is set (with ``HOFFDESK_TEST_COMFYUI_CKPT``,
    a checkpoint it has), else one stand-in server for the whole session."""
    real = _target_from_environment()
    if real is not None:
        yield real
        return
    server = StandInComfyUI().start()
    try:
        yield ComfyUITarget(url=server.url, checkpoint=STAND_IN_CHECKPOINT, server=server)
    finally:
        server.kill()


@pytest.fixture
def fresh_comfyui() -> Iterator[ComfyUITarget]:
    """A stand-in of the test's own, for tests that kill or restart the server (never a real
    ComfyUI: a test does not kill someone's server)."""
    if _target_from_environment() is not None:
        pytest.skip(
            "kills and restarts the server: only the stand-in, not the real ComfyUI at HOFFDESK_TEST_COMFYUI_URL"
        )
    server = StandInComfyUI().start()
    try:
        yield ComfyUITarget(url=server.url, checkpoint=STAND_IN_CHECKPOINT, server=server)
    finally:
        if server._httpd is not None:
            server.kill()
