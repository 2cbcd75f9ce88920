"""A small client for a ComfyUI server: the protocol half of the ComfyUI engine.

ComfyUI runs on another machine (the owner's Gaming PC) and is driven over its HTTP and WebSocket
API, as Open WebUI and Krita AI Diffusion drive it. Facts this code relies on, measured against a
real ComfyUI v0.33 (docs/design.md, "ComfyUI as an engine"):

- ``POST /prompt`` accepts a client-chosen ``prompt_id`` (a lowercase UUID), so a run can name its
  prompt before sending it and find it again after a crash; an invalid graph answers 400 with
  ``error`` and ``node_errors`` by node id.
- The WebSocket ``/ws?clientId=`` gets the frames of the prompts sent with that ``client_id``.
  ``execution_success`` arrives *before* ``/history/{id}`` is written: a run is over only at
  ``executing`` with ``node: null`` for its prompt.
- ``progress`` is throttled by the server (>= 100 ms): only the first and last step are certain.
- ``POST /interrupt {"prompt_id"}`` stops that prompt if it is the running one;
  ``POST /queue {"delete": [...]}`` drops pending ones. Both are harmless for other prompts.
- History lives in the server's memory: a restarted ComfyUI knows nothing of earlier prompts.

Every call has a timeout; ``follow`` checks the server is still there when its socket is quiet,
so nothing waits forever. Exception messages never name the server's address or token (they end
up in a run's error text, which onlookers see); the log does name the address.

No torch here: the web process may import this module (health checks, the profile form).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import websocket

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]


class ComfyUIError(Exception):
    """Anything ComfyUI refused or failed."""


class PromptRejected(ComfyUIError):
    """``POST /prompt`` answered 400: the graph is invalid. ``node_errors`` is ComfyUI's, by node id."""

    def __init__(self, message: str, *, error: dict[str, Any], node_errors: dict[str, Any]) -> None:
        super().__init__(message)
        self.error = error
        self.node_errors = node_errors


class ExecutionFailed(ComfyUIError):
    """``execution_error``: a node raised while the prompt ran."""

    def __init__(self, message: str, *, node_id: str | None, node_type: str | None) -> None:
        super().__init__(message)
        self.node_id = node_id
        self.node_type = node_type


class Interrupted(ComfyUIError):
    """``execution_interrupted`` that we did not ask for (someone pressed Cancel in ComfyUI)."""


class Cancelled(ComfyUIError):
    """We cancelled the prompt (``should_cancel``): interrupted if running, deleted if queued."""


class ConnectionLost(ComfyUIError):
    """The server went away: refused, timed out, dropped the WebSocket, or restarted (it no longer
    knows the prompt). The prompt's fate is unknown, so a run treats this like a dead worker."""


class FollowTimeout(ComfyUIError):
    """The prompt did not finish within ``follow``'s deadline; it was interrupted."""


@dataclass(frozen=True)
class QueueState:
    """The prompt ids ComfyUI is running and holding, from ``GET /queue``."""

    running: list[str]
    pending: list[str]

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self.running or prompt_id in self.pending


def new_prompt_id() -> str:
    """A prompt id of our choosing, in the form ComfyUI makes its own (a lowercase UUID)."""
    return str(uuid.uuid4())


def _node_label(node_id: object, class_type: object) -> str:
    return f"node {node_id} ({class_type})" if class_type else f"node {node_id}"


def _rejection_message(error: dict[str, Any], node_errors: dict[str, Any]) -> str:
    """One line naming each node and what ComfyUI said about it."""
    parts = []
    for node_id, entry in node_errors.items():
        problems = "; ".join(
            ": ".join(str(bit) for bit in (item.get("message"), item.get("details")) if bit)
            for item in entry.get("errors", [])
        )
        parts.append(f"{_node_label(node_id, entry.get('class_type'))}: {problems or 'invalid'}")
    head = str(error.get("message") or "invalid workflow")
    if error.get("details"):
        head += f" ({error['details']})"
    return f"ComfyUI refused the workflow: {head}" + (f": {'; '.join(parts)}" if parts else "")


class ComfyUIClient:
    """One ComfyUI server at ``base_url`` (``http(s)://host:port``, a path prefix allowed), with an
    optional bearer ``token`` for a server behind an auth proxy. ``timeout`` bounds each HTTP call
    and the WebSocket's connect."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token or None
        self.timeout = timeout

    @classmethod
    def from_settings(cls) -> ComfyUIClient | None:
        """The server of ``HOFFDESK_COMFYUI_URL`` (and ``HOFFDESK_COMFYUI_TOKEN``), or None when unset."""
        from django.conf import settings

        url: str = getattr(settings, "HOFFDESK_COMFYUI_URL", "")
        if not url:
            return None
        return cls(url, token=getattr(settings, "HOFFDESK_COMFYUI_TOKEN", "") or None)

    # --- HTTP --------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _request(self, method: str, path: str, body: object = None, *, timeout: float | None = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        headers = self._headers()
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                answer: bytes = response.read()
                return answer
        except urllib.error.HTTPError as exc:
            detail = exc.read()
            if exc.code == 400 and path == "/prompt":
                raise self._rejected(detail) from None
            logger.warning(
                "ComfyUI at %s answered %s to %s %s: %r", self.base_url, exc.code, method, path, detail[:300]
            )
            raise ComfyUIError(f"ComfyUI answered HTTP {exc.code} to {method} {path}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            logger.warning("ComfyUI at %s: %s %s failed: %s", self.base_url, method, path, reason)
            raise ConnectionLost(f"ComfyUI is not answering ({method} {path}: {reason})") from None

    def _json(self, method: str, path: str, body: object = None) -> Any:
        raw = self._request(method, path, body)
        try:
            return json.loads(raw)
        except ValueError:
            raise ComfyUIError(f"ComfyUI answered {method} {path} with something that is not JSON") from None

    @staticmethod
    def _rejected(detail: bytes) -> ComfyUIError:
        try:
            answer = json.loads(detail)
        except ValueError:
            return ComfyUIError("ComfyUI refused the workflow (HTTP 400, no JSON answer)")
        error = answer.get("error") if isinstance(answer.get("error"), dict) else {"message": str(answer.get("error"))}
        node_errors = answer.get("node_errors") or {}
        return PromptRejected(_rejection_message(error, node_errors), error=error, node_errors=node_errors)

    def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """Node types the server has, with their inputs and choices (``GET /object_info``)."""
        path = "/object_info" + (f"/{urllib.parse.quote(node_class)}" if node_class else "")
        info: dict[str, Any] = self._json("GET", path)
        return info

    def checkpoints(self) -> list[str]:
        """The model files this server's loader nodes offer (checkpoints, UNets)."""
        return checkpoint_choices(self.object_info("CheckpointLoaderSimple"))

    def system_stats(self) -> dict[str, Any]:
        """Version, Python, devices and their memory (``GET /system_stats``)."""
        stats: dict[str, Any] = self._json("GET", "/system_stats")
        return stats

    def queue(self) -> QueueState:
        """Which prompts ComfyUI is running and holding (``GET /queue``; rows are [number, id, ...])."""
        answer = self._json("GET", "/queue")
        return QueueState(
            running=[str(row[1]) for row in answer.get("queue_running", [])],
            pending=[str(row[1]) for row in answer.get("queue_pending", [])],
        )

    def submit(
        self, graph: dict[str, Any], client_id: str, prompt_id: str, *, extra_pnginfo: dict[str, Any] | None = None
    ) -> int:
        """Queue ``graph`` (API format) as ``prompt_id``; its frames go to ``client_id``'s WebSocket.
        Returns ComfyUI's queue number; raises PromptRejected naming the nodes of an invalid graph.
        ``extra_pnginfo`` keys become text chunks of the saved PNGs (e.g. ``workflow``)."""
        body: dict[str, Any] = {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}
        if extra_pnginfo:
            body["extra_data"] = {"extra_pnginfo": extra_pnginfo}
        answer = self._json("POST", "/prompt", body)
        if answer.get("node_errors"):  # some versions answer 200 with errors for unused nodes
            logger.info("ComfyUI accepted prompt %s with node errors: %s", prompt_id, answer["node_errors"])
        if answer.get("prompt_id") not in (None, prompt_id):
            self._let_go(str(answer["prompt_id"]))  # queued under a name nobody follows: take it back
            raise ComfyUIError("ComfyUI ignored our prompt id: it is too old to be driven safely")
        return int(answer.get("number", 0))

    def interrupt(self, prompt_id: str) -> None:
        """Stop ``prompt_id`` at its next step if it is the running one; nothing otherwise."""
        self._request("POST", "/interrupt", {"prompt_id": prompt_id})

    def delete_queued(self, prompt_ids: list[str]) -> None:
        """Drop pending prompts from ComfyUI's queue (a running one is not touched)."""
        self._request("POST", "/queue", {"delete": list(prompt_ids)})

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The finished prompt's entry (``outputs``, ``status``), or None while it is not written."""
        answer = self._json("GET", f"/history/{urllib.parse.quote(prompt_id)}")
        entry: dict[str, Any] | None = answer.get(prompt_id)
        return entry

    def images(self, prompt_id: str) -> list[tuple[str, bytes]]:
        """The saved PNGs of a finished prompt as (filename, bytes), in output node order, fetched
        with ``/view``; previews (type ``temp``) are left out. Empty for a failed prompt."""
        entry = self.history(prompt_id)
        if entry is None:
            raise ComfyUIError(f"ComfyUI has no history for prompt {prompt_id}")
        found = []
        for _node_id, output in sorted(entry.get("outputs", {}).items(), key=lambda item: _id_key(item[0])):
            for image in output.get("images", []):
                if image.get("type", "output") != "output":
                    continue
                query = urllib.parse.urlencode(
                    {"filename": image["filename"], "subfolder": image.get("subfolder", ""), "type": "output"}
                )
                found.append((str(image["filename"]), self._request("GET", f"/view?{query}")))
        return found

    # --- WebSocket ----------------------------------------------------------------------------

    def _websocket_url(self, client_id: str) -> str:
        parts = urllib.parse.urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        query = urllib.parse.urlencode({"clientId": client_id})
        return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path + "/ws", query, ""))

    def follow(
        self,
        prompt_id: str,
        client_id: str,
        on_progress: ProgressCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
        *,
        poll_interval: float = 0.5,
        quiet_check: float = 15.0,
        deadline: float = 6 * 3600.0,
    ) -> dict[str, Any]:
        """Wait for ``prompt_id`` (sent with ``client_id``) to finish; return its history entry.

        ``on_progress(value, max)`` is called for each ``progress`` frame of the prompt.
        ``should_cancel()`` is asked every ``poll_interval`` seconds; when it says yes the prompt
        is interrupted (running) or deleted (pending) and Cancelled is raised once ComfyUI has let
        go of it. Raises ExecutionFailed, Interrupted (by someone else), ConnectionLost (socket
        dropped, server silent or restarted: the prompt is then interrupted and deleted where the
        server still answers, so no prompt runs on that nobody follows), FollowTimeout after
        ``deadline`` seconds. Opens its own socket and then asks the queue and history, so a prompt
        that finished before the socket opened is still seen.
        """
        try:
            ws = websocket.create_connection(
                self._websocket_url(client_id),
                timeout=self.timeout,
                header=[f"{name}: {value}" for name, value in self._headers().items()],
                enable_multithread=True,
            )
        except websocket.WebSocketBadStatusException as exc:
            self._let_go(prompt_id)  # nobody can follow it: do not leave it running
            raise ComfyUIError(f"ComfyUI refused the WebSocket (HTTP {exc.status_code})") from None
        except (websocket.WebSocketException, OSError) as exc:
            logger.warning("ComfyUI at %s: WebSocket connect failed: %s", self.base_url, exc)
            self._let_go(prompt_id)
            raise ConnectionLost(f"ComfyUI's WebSocket is not answering ({type(exc).__name__})") from None
        try:
            return self._follow(ws, prompt_id, on_progress, should_cancel, poll_interval, quiet_check, deadline)
        except ConnectionLost:
            self._let_go(prompt_id)
            raise
        finally:
            ws.close(timeout=1)

    def _follow(
        self,
        ws: websocket.WebSocket,
        prompt_id: str,
        on_progress: ProgressCallback | None,
        should_cancel: Callable[[], bool] | None,
        poll_interval: float,
        quiet_check: float,
        deadline: float,
    ) -> dict[str, Any]:
        finished = self._finished_already(prompt_id)
        if finished is not None:
            return self._outcome(prompt_id, finished, cancelled=False)
        ws.settimeout(poll_interval)
        now = time.monotonic()
        ends_at, next_cancel_check, next_queue_check = now + deadline, now, now + quiet_check
        cancelled = False
        while True:
            now = time.monotonic()
            if should_cancel is not None and not cancelled and now >= next_cancel_check:
                next_cancel_check = now + poll_interval  # at most this often: it may ask the database
                if should_cancel():
                    cancelled = True
                    next_queue_check = now  # stopped there; a deleted pending prompt sends nothing
            if now > ends_at:
                self._let_go(prompt_id)
                raise FollowTimeout(f"ComfyUI prompt {prompt_id} did not finish within {deadline:.0f} s")
            if now >= next_queue_check:
                if cancelled:  # again at each check: a pending prompt may have started meanwhile
                    self._stop(prompt_id)
                # Nothing heard of this prompt for a while (a model loading, other prompts ahead):
                # fine while ComfyUI still holds it; over (or lost to a restart) otherwise.
                finished = self._finished_already(prompt_id)
                if finished is not None:
                    return self._outcome(prompt_id, finished, cancelled=cancelled)
                next_queue_check = now + (poll_interval if cancelled else quiet_check)
            try:
                frame = ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketException, OSError) as exc:
                raise ConnectionLost(f"ComfyUI dropped the WebSocket mid-run ({type(exc).__name__})") from None
            if frame == "":
                raise ConnectionLost("ComfyUI closed the WebSocket mid-run")
            if isinstance(frame, bytes):  # a binary preview image
                continue
            message = json.loads(frame)
            data = message.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            if not cancelled:
                next_queue_check = time.monotonic() + quiet_check
            kind = message.get("type")
            if kind == "progress" and on_progress is not None and not cancelled:
                on_progress(int(data["value"]), int(data["max"]))
            elif kind == "executing" and data.get("node") is None:
                entry = self.history(prompt_id)
                if entry is None:
                    raise ComfyUIError(f"ComfyUI finished prompt {prompt_id} but wrote no history for it")
                return self._outcome(prompt_id, entry, cancelled=cancelled)

    def _finished_already(self, prompt_id: str) -> dict[str, Any] | None:
        """The history entry if the prompt is over; None while ComfyUI runs or holds it.
        The queue is read first: ComfyUI moves a prompt from the queue to history under one lock,
        so a prompt in neither was never there or was lost with a restart."""
        if prompt_id in self.queue():
            return None
        entry = self.history(prompt_id)
        if entry is None:
            return {"status": {"status_str": "deleted", "completed": False, "messages": []}, "outputs": {}}
        return entry

    def _outcome(self, prompt_id: str, entry: dict[str, Any], *, cancelled: bool) -> dict[str, Any]:
        """The history entry of a finished prompt, or the exception its status calls for."""
        status = entry.get("status") or {}
        if status.get("status_str") == "deleted":
            if cancelled:
                raise Cancelled(f"ComfyUI prompt {prompt_id} was cancelled before it ran")
            raise ConnectionLost(f"ComfyUI does not know prompt {prompt_id}: it was restarted, or the prompt deleted")
        if status.get("completed", status.get("status_str") == "success"):
            return entry
        for kind, data in status.get("messages", []):
            if kind == "execution_interrupted":
                if cancelled:
                    raise Cancelled(f"ComfyUI prompt {prompt_id} was interrupted as asked")
                label = _node_label(data.get("node_id"), data.get("node_type"))
                raise Interrupted(f"ComfyUI prompt {prompt_id} was interrupted on the server at {label}")
            if kind == "execution_error":
                label = _node_label(data.get("node_id"), data.get("node_type"))
                what = f"{data.get('exception_type', 'error')}: {data.get('exception_message', '')}"
                raise ExecutionFailed(
                    f"ComfyUI failed at {label}: {what}",
                    node_id=data.get("node_id"),
                    node_type=data.get("node_type"),
                )
        if cancelled:
            raise Cancelled(f"ComfyUI prompt {prompt_id} was cancelled")
        raise ComfyUIError(f"ComfyUI prompt {prompt_id} ended with status {status.get('status_str')!r}")

    def _stop(self, prompt_id: str) -> None:
        """Delete the prompt if pending, interrupt it if running. Asking the queue first matters:
        ComfyUI before v0.3.30 ignores the id in ``/interrupt`` and stops whatever runs."""
        state = self.queue()
        if prompt_id in state.pending:
            self.delete_queued([prompt_id])
            state = self.queue()  # it may have started between the two
        if prompt_id in state.running:
            self.interrupt(prompt_id)

    def _let_go(self, prompt_id: str) -> None:
        """Best effort: stop a prompt nobody will follow any more (never raises)."""
        try:
            self._stop(prompt_id)
        except ComfyUIError:
            pass


def _id_key(node_id: str) -> tuple[int, str]:
    """Node ids are usually numbers in strings: sort "7" before "10"."""
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)


def checkpoint_choices(nodes: dict[str, Any]) -> list[str]:
    """Every model file the loader nodes offer (checkpoints, UNets), from ``/object_info``."""
    offered: list[str] = []
    for node_type, field in (("CheckpointLoaderSimple", "ckpt_name"), ("UNETLoader", "unet_name")):
        spec = nodes.get(node_type, {}).get("input", {}).get("required", {}).get(field) or [[]]
        # Older nodes list the choices first; nodes on ComfyUI's v3 schema say ["COMBO", {"options": [...]}].
        choices = spec[0] if isinstance(spec[0], list) else (spec[1].get("options", []) if len(spec) > 1 else [])
        offered += [str(name) for name in choices if str(name) not in offered]
    return offered
