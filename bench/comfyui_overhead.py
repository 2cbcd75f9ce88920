"""What HoffDesk adds on top of a ComfyUI server: the same workflow and the same number of images,
queued through HoffDesk's ComfyUI engine, against the same prompts queued directly on the server.

Each round makes ``--images`` images twice, in alternating order:

- **HoffDesk**: a run from a preset on the workflow (``run_submit``), then ``run_generate`` in this
  process, the GPU queue's task body without a ``qcluster`` (timed from the submit to the run
  recorded: claim, one prompt per seed, the WebSocket followed, images fetched, our recipe added
  to each PNG, files stored, thumbnails made, rows written).
- **direct**: what a bare script does (ComfyUI's own websockets_api_example.py): the same graphs
  (batch 1, one seed each) sent with ``POST /prompt``, one WebSocket read until each prompt's
  ``executing`` with ``node: null``, then ``/history`` and ``/view`` for its image.

Both sides use seeds of their own (ComfyUI caches a node whose inputs did not change, so the same
seed twice would make no image the second time); only the sampler's seed differs, so the loaded
checkpoint stays cached for both, and a warm-up prompt loads it before the first round.

It prints the median of the per-round totals and the ratio HoffDesk / direct (target <= 1.10, the
issue's), and exits 0 on PASS, 1 on FAIL, 2 on errors (server not answering, a run failing).

Usage:
  .venv/bin/python bench/comfyui_overhead.py --url http://gaming-pc:8188 --ckpt model.safetensors
  .venv/bin/python bench/comfyui_overhead.py --stand-in   # smoke on the test suite's stand-in server
``--workflow FILE`` runs an API-format workflow of yours (its mapping is proposed as in the admin);
the default is the SD 1.5 graph a real ComfyUI ran (tests/comfyui_server.py). ``--stand-in`` starts
the tests' stand-in ComfyUI (tests/comfyui_server.py; it sleeps per step and makes tiny PNGs): it
proves the script end to end, and its ratio is NOT a measurement of ComfyUI: record only real
servers' figures, with their version (printed from ``/system_stats``).
The data folder is a new temp folder, deleted at the end unless ``--keep``; it never touches ./data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from _common import BenchError, machine_line

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RATIO_TARGET = 1.10
USERNAME = "bench-editor"


# --- the direct side: a bare script ------------------------------------------------------------


def _http(url: str, body: object = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        raw = response.read()
    return raw if url.split("?")[0].endswith("/view") else json.loads(raw)


def direct_images(base_url: str, graphs: list[dict[str, Any]]) -> list[bytes]:
    """Queue ``graphs`` on the server and return each one's first image, as a bare script would."""
    import websocket

    client_id = uuid.uuid4().hex
    parts = urllib.parse.urlsplit(base_url)
    ws_url = f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}{parts.path}/ws?clientId={client_id}"
    ws = websocket.create_connection(ws_url, timeout=600)
    try:
        waiting = [_http(f"{base_url}/prompt", {"prompt": g, "client_id": client_id})["prompt_id"] for g in graphs]
        pending = set(waiting)
        while pending:
            frame = ws.recv()
            if not isinstance(frame, str):
                continue  # a binary preview
            message = json.loads(frame)
            data = message.get("data", {})
            if message.get("type") == "execution_error":
                raise BenchError(f"ComfyUI failed a direct prompt: {data.get('exception_message')}")
            if message.get("type") == "executing" and data.get("node") is None:
                pending.discard(data.get("prompt_id"))
    finally:
        ws.close()
    images = []
    for prompt_id in waiting:
        outputs = _http(f"{base_url}/history/{prompt_id}")[prompt_id]["outputs"]
        image = next(i for output in outputs.values() for i in output.get("images", []))
        query = urllib.parse.urlencode(
            {"filename": image["filename"], "subfolder": image["subfolder"], "type": image["type"]}
        )
        images.append(_http(f"{base_url}/view?{query}"))
    return images


# --- the HoffDesk side ---------------------------------------------------------------------------


def hoffdesk_images(article: Any, preset: Any, editor: Any, seed: int, count: int) -> int:
    """One run of ``count`` images through HoffDesk's ComfyUI engine; returns how many it made."""
    from generation import tasks
    from generation.models import GenerationRun
    from generation.services import run_submit

    run = run_submit(article=article, preset=preset, seed=seed, count=count, requested_by=editor)
    status = tasks.run_generate(run.pk)
    if status != "succeeded":
        raise BenchError(f"run {run.pk} ended {status}: {GenerationRun.objects.get(pk=run.pk).error}")
    return run.candidates.count()


def measure(args: argparse.Namespace, data_dir: Path, url: str, checkpoint: str) -> int:
    os.environ.pop("DATABASE_URL", None)
    for name in [n for n in os.environ if n.startswith("HOFFDESK_CANDIDATES_")]:
        os.environ.pop(name)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "hoffdesk_images.settings",
            "HOFFDESK_DATA_DIR": str(data_dir),
            "HOFFDESK_DEBUG": "false",
            "HOFFDESK_LOG_LEVEL": "WARNING",
            "HOFFDESK_COMFYUI_URL": url,
        }
    )
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command

    from gallery.models import Article
    from generation.comfyui import ComfyUIClient
    from generation.comfyui_engine import comfyui_graph
    from generation.models import ComfyWorkflow, GenerationRun, StylePreset
    from generation.workflows import load_workflow, propose_mapping

    call_command("migrate", verbosity=0)
    if args.workflow:
        graph = load_workflow(Path(args.workflow).read_bytes())
    else:
        from tests.comfyui_server import sd15_workflow

        graph = sd15_workflow(checkpoint)
    workflow = ComfyWorkflow.objects.create(name="bench", graph=graph, mapping=propose_mapping(graph))
    preset = StylePreset.objects.create(
        name="bench-comfy",
        slug="bench-comfy",
        comfy_workflow=workflow,
        width=args.size,
        height=args.size,
        steps=args.steps,
        guidance=7.0,
    )
    editor = get_user_model().objects.create_user(username=USERNAME, password="bench-editor-password-1")
    editor.groups.set([Group.objects.get_or_create(name="editors")[0]])
    article = Article.objects.create(slug="bench-comfyui", title="ComfyUI overhead", content_type="technical")

    client = ComfyUIClient.from_settings()
    assert client is not None
    version = client.system_stats().get("system", {}).get("comfyui_version", "unknown")
    print(f"ComfyUI {version} at {url}; {args.images} images a side, {args.rounds} rounds", flush=True)

    from generation.services import run_submit

    # The graph HoffDesk sends for a seed (the preset's prompt, size and steps, batch 1), from a
    # run that is never executed, so both sides ask the server for the same work.
    probe = run_submit(article=article, preset=preset, seed=1, count=1, requested_by=editor)
    # Cancelled at once: a queued probe would be the oldest run, which the worker's claim takes first.
    GenerationRun.objects.filter(pk=probe.pk).update(status=GenerationRun.Status.CANCELLED)

    def graphs(first_seed: int) -> list[dict[str, Any]]:
        return [comfyui_graph(probe, first_seed + i) for i in range(args.images)]

    direct_images(url, graphs(1)[:1])  # warm-up: the checkpoint is loaded before the first round
    ours: list[float] = []
    bare: list[float] = []
    for round_no in range(args.rounds):
        base = 10_000 * (round_no + 1)
        sides = [("hoffdesk", base), ("direct", base + 5_000)]
        for side, seed in sides if round_no % 2 == 0 else sides[::-1]:
            if side == "direct":
                work = graphs(seed)
                started = time.perf_counter()
                made = len(direct_images(url, work))
                bare.append(time.perf_counter() - started)
            else:
                started = time.perf_counter()
                made = hoffdesk_images(article, preset, editor, seed, args.images)
                ours.append(time.perf_counter() - started)
            if made != args.images:
                raise BenchError(f"{side} made {made} images, not {args.images}")
        print(f"round {round_no + 1}: HoffDesk {ours[-1]:.3f} s, direct {bare[-1]:.3f} s", flush=True)

    ratio = statistics.median(ours) / statistics.median(bare)
    target = args.target
    verdict = "PASS" if ratio <= target else "FAIL"
    print(machine_line())
    print(f"median HoffDesk {statistics.median(ours):.3f} s, direct {statistics.median(bare):.3f} s")
    print(f"ratio HoffDesk/direct {ratio:.3f}  target <= {target}  {verdict}")
    if args.stand_in:
        print("(stand-in server: a smoke of this script, not a measurement of ComfyUI)")
    return 0 if verdict == "PASS" else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="the ComfyUI server, e.g. http://gaming-pc:8188")
    parser.add_argument("--ckpt", default="", help="a checkpoint the server has (for the default workflow)")
    parser.add_argument("--workflow", help="an API-format workflow file to run instead of the default")
    parser.add_argument("--stand-in", action="store_true", help="start the tests' stand-in server (smoke)")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--target", type=float, default=RATIO_TARGET)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if not args.url and not args.stand_in:
        parser.error("give --url of a ComfyUI server (or --stand-in for a smoke run)")
    data_dir = Path(tempfile.mkdtemp(prefix="hoffdesk-bench-comfyui-"))
    stand_in = None
    try:
        url, checkpoint = (args.url or "").rstrip("/"), args.ckpt
        if args.stand_in:
            from tests.comfyui_server import STAND_IN_CHECKPOINT, StandInComfyUI

            stand_in = StandInComfyUI(step_delay=0.02, history_delay=0.0).start()
            url, checkpoint = stand_in.url, STAND_IN_CHECKPOINT
        return measure(args, data_dir, url, checkpoint)
    except BenchError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    finally:
        if stand_in is not None:
            stand_in.kill()
        if args.keep:
            print(f"data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
