"""Do clients waiting on the image APIs starve the editors' dashboard? Over real HTTP, under the
production server (uvicorn, hoffdesk_images/asgi.py).

It seeds a throw-away data folder (migrations, 50 articles, an API token, 20 logged-in editors),
starts ``uvicorn hoffdesk_images.asgi:application`` as a subprocess with no GPU worker (so every
image run stays queued and its client waits the whole time), then:

1. baseline: the 20 editors browse dashboard pages (the article list, the Inbox, an article) for
   ``--seconds``, each looking ``--think`` seconds at a page before the next; wall time of each
   whole request on loopback;
2. under load: 50 clients (half AUTOMATIC1111 ``txt2img``, half OpenAI ``images/generations``)
   are queued and waiting, and the same 20 editors browse for the same time.

It prints the dashboard's p50/p95 for both phases, the ratio of the p95s (target <= 2.0 and p95
under load < 1 s), the request errors (target 0: any dashboard answer other than 200, any
waiting client answered other than the 504 "still queued" it must get when its wait ends, any
connection error), the server's threads and RSS while loaded, and the machine. Exit status 0 when
every target is met (PASS), 1 when one is missed (FAIL), 2 when the bench itself fails.

Usage: .venv/bin/python bench/load.py [--seconds N] [--waiters N] [--editors N] [--think S] [--keep]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import BenchError, free_port, machine_line, stop_server

ROOT = Path(__file__).resolve().parent.parent
UVICORN = [sys.executable, "-m", "uvicorn", "hoffdesk_images.asgi:application", "--host", "127.0.0.1"]
PAGES = ["/", "/inbox/", "/articles/load-7/", "/?page=2"]
SEED = """
import json
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from api.models import ApiToken
from gallery.models import Article

editors = Group.objects.get_or_create(name="editors")[0]
for n in range(50):
    Article.objects.create(slug=f"load-{n}", title=f"Load article {n}", summary="A summary.",
                           content_type="technical", tone="calm")
pipeline = get_user_model().objects.create(username="pipeline")
pipeline.groups.add(editors)
_row, token = ApiToken.issue(user=pipeline, name="load")
cookies = []
for n in range(int(EDITORS)):
    user = get_user_model().objects.create(username=f"editor{n}")
    user.groups.add(editors)
    client = Client()
    client.force_login(user)
    cookies.append(client.cookies["sessionid"].value)
print(json.dumps({"token": token, "cookies": cookies}))
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Target:
    def __init__(self, port: int) -> None:
        self.port = port

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 60
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            payload = None if body is None else json.dumps(body)
            conn.request(method, path, payload, {"Content-Type": "application/json", **(headers or {})})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


def browse(target: Target, cookie: str, until: float, think: float, latencies: list[float], errors: list[str]) -> None:
    """One editor: a dashboard page, ``think`` seconds looking at it, the next, until ``until``."""
    n = 0
    while time.monotonic() < until:
        if n:
            time.sleep(think)
        path = PAGES[n % len(PAGES)]
        n += 1
        started = time.monotonic()
        try:
            status, _body = target.request("GET", path, headers={"Cookie": f"sessionid={cookie}"}, timeout=30)
        except OSError as exc:
            errors.append(f"GET {path}: {exc}")
            continue
        latencies.append(time.monotonic() - started)
        if status != 200:
            errors.append(f"GET {path}: HTTP {status}")


def wait_for_images(target: Target, n: int, token: str, errors: list[str], answered: list[int]) -> None:
    """One image client: a request that waits until its wait runs out (504: the run is queued)."""
    tiny = {"prompt": f"a lighthouse {n}", "steps": 2}
    try:
        if n % 2:
            status, body = target.request(
                "POST", "/v1/images/generations", {**tiny, "size": "64x64"}, {"Authorization": f"Bearer {token}"}, 600
            )
        else:
            basic = "Basic " + base64.b64encode(f"webui:{token}".encode()).decode()
            status, body = target.request(
                "POST", "/sdapi/v1/txt2img", {**tiny, "width": 64, "height": 64}, {"Authorization": basic}, 600
            )
    except OSError as exc:
        errors.append(f"image client {n}: {exc}")
        return
    answered.append(status)
    if status != 504:
        errors.append(f"image client {n}: HTTP {status} {body[:200]!r}")


def phase(target: Target, cookies: list[str], seconds: float, think: float) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    until = time.monotonic() + seconds
    editors = [threading.Thread(target=browse, args=(target, c, until, think, latencies, errors)) for c in cookies]
    for editor in editors:
        editor.start()
    for editor in editors:
        editor.join()
    return latencies, errors


def server_status(pid: int) -> str:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return f"threads {fields['Threads'].strip()}, RSS {fields['VmRSS'].strip()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument("--waiters", type=int, default=50)
    parser.add_argument("--editors", type=int, default=20)
    parser.add_argument("--think", type=float, default=1.0, help="seconds an editor looks at a page")
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    args = parser.parse_args()

    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    data = Path(tempfile.mkdtemp(prefix="hoffdesk-load-"))
    # The image clients' wait outlasts the loaded phase: they are all still waiting throughout.
    wait = args.seconds + 20
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOFFDESK_") and k != "DATABASE_URL"}
    env.update(
        HOFFDESK_DATA_DIR=str(data),
        HOFFDESK_DEBUG="false",
        HOFFDESK_IMAGE_API_WAIT=str(wait),
        HOFFDESK_USER_QUEUE_LIMIT=str(args.waiters + 10),
        DJANGO_SETTINGS_MODULE="hoffdesk_images.settings",
        PYTHONUNBUFFERED="1",
    )
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True)
        seeded = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", SEED.replace("EDITORS", str(args.editors))],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        seed = json.loads(seeded.stdout.strip().splitlines()[-1])
        port = free_port()
        log = data / "uvicorn.log"
        proc = subprocess.Popen(
            [*UVICORN, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        target = Target(port)
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise BenchError(f"uvicorn exited: {log.read_text()[-2000:]}")
            try:
                if target.request("GET", "/login/", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError("uvicorn did not answer /login/ within 60 s")
            time.sleep(0.2)
        for path in PAGES:  # warm: templates, the first connection
            status, _ = target.request("GET", path, headers={"Cookie": f"sessionid={seed['cookies'][0]}"})
            if status != 200:
                raise BenchError(f"GET {path} answers HTTP {status} before any load")

        baseline, errors = phase(target, seed["cookies"], args.seconds, args.think)

        image_errors: list[str] = []
        answered: list[int] = []
        waiters = [
            threading.Thread(target=wait_for_images, args=(target, n, seed["token"], image_errors, answered))
            for n in range(args.waiters)
        ]
        for waiter in waiters:
            waiter.start()
        time.sleep(3)  # every waiter has queued its run and is waiting
        if answered:
            raise BenchError(f"{len(answered)} image clients were answered before the load phase: {answered[:5]}")
        loaded, load_errors = phase(target, seed["cookies"], args.seconds, args.think)
        status_line = server_status(proc.pid)
        for waiter in waiters:
            waiter.join(timeout=wait + 60)
        errors += load_errors + image_errors
        if len(answered) != args.waiters:
            errors.append(f"only {len(answered)} of {args.waiters} image clients were answered")
    except (BenchError, subprocess.CalledProcessError, OSError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    finally:
        if proc is not None:
            stop_server(proc)
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)

    if not baseline or not loaded:
        print("ERROR: no dashboard request finished", file=sys.stderr)
        return 2
    base95, load95 = percentile(baseline, 0.95), percentile(loaded, 0.95)
    ratio = load95 / base95
    print(
        f"uvicorn hoffdesk_images.asgi, 1 process; {args.editors} editors ({args.think:g} s between pages), "
        f"{args.seconds:g} s a phase; load average before: {load_before}"
    )
    print(
        f"baseline:   {len(baseline)} dashboard requests, p50 {statistics.median(baseline) * 1000:.1f} ms, "
        f"p95 {base95 * 1000:.1f} ms"
    )
    print(
        f"{args.waiters} image clients waiting: {len(loaded)} dashboard requests, "
        f"p50 {statistics.median(loaded) * 1000:.1f} ms, p95 {load95 * 1000:.1f} ms"
    )
    print(f"server while loaded: {status_line}")
    print(f"p95 ratio loaded/baseline: {ratio:.2f} (target <= 2.0), p95 loaded < 1000 ms")
    print(f"request errors: {len(errors)} (target 0)")
    for error in errors[:10]:
        print(f"  {error}")
    print(machine_line())
    passed = ratio <= 2.0 and load95 < 1.0 and not errors
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
