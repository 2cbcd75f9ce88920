"""Click to first preview and click to first thumbnail on a fresh start (issue 18, item 4).

What the editor feels on the first click of the day: the time from pressing Generate on an
article page to (1) the first live preview picture drawn on the run card and (2) the first
candidate thumbnail loaded in the page (its ``<img>`` loaded with ``naturalWidth > 0``), measured
in Debian's Chromium driven by Playwright against a real install started as ``make run`` starts
it: ``manage.py migrate``, ``collectstatic`` and ``bootstrap`` (the admin's password from
``HOFFDESK_ADMIN_PASSWORD``) into a new data folder, then ``python -m hoffdesk_images.run`` (web
server, GPU worker, light worker) on a free loopback port, in a process group of its own, stopped
with SIGTERM at the end whatever happened.

Two passes, each on a fresh data folder (so a fresh models folder too: the tiny model is built on
its first load, as on a fresh install) and a fresh start:

- baseline, ``HOFFDESK_PRELOAD=false``: the GPU worker loads the model when the first task arrives;
- ``HOFFDESK_PRELOAD=true`` (the default): the worker loads the default model when it starts.

In each pass the bench waits until the dashboard answers and ``/healthz`` lists a live GPU worker,
logs in through the login page as the admin, opens the article (made with ``manage.py
import_articles``), and then pauses ``--pause`` seconds (the editor opening the dashboard), so
that with preload on the model is loaded by the click, as the issue intends. What the worker's
heartbeat said it had loaded at the click is printed. The Generate form keeps its defaults except
the model, which is set to the site default (``HOFFDESK_DEFAULT_MODEL``, the model the worker
preloads on a fresh install): left blank, the form takes the model of the article's content-type
preset (FLUX.1-dev for a technical article), which the worker does not preload on a fresh install;
``--model ""`` measures that case. Both times are read from the browser's clock: a capturing
``load`` listener installed before every page records when the first preview and the first
thumbnail finished loading; the card polls every second, as an editor's page does.

Prints the machine line, both figures for both passes, and the ratio preload / no preload of click
to first thumbnail (target: below ``--target``, 1.0). The exit status is 0 when the target is met,
1 on a miss (a ``MISS:`` line says why), and 2 on errors (a server that dies, a wait that passes
``--timeout``, a run that fails).

    .venv/bin/python bench/first_image.py            # the form's defaults, tiny-sd: about 2 minutes
    .venv/bin/python bench/first_image.py --smoke    # 1 candidate of 128x128, 200 steps: the test suite's
    .venv/bin/python bench/first_image.py --keep     # keep both data folders (their paths are printed)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import BenchError, free_port, log_tail, machine_line

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN = "admin"
PASSWORD = "bench-first-image-password-1"  # a throw-away admin in a throw-away database
ARTICLE = {
    "slug": "first-image",
    "title": "Keeping a GPU warm for the first click",
    "summary": "Load the model before the editor asks for it.",
    "content_type": "technical",
    "tone": "calm",
}
# The supervisor gives each child 20 s to drain (hoffdesk_images/run.py); then we kill what is left.
STOP_WAIT_SECONDS = 45

# Installed before every document: the browser's own time when the first run preview and the
# first candidate thumbnail finished loading (``load`` does not bubble, so listen in the capture
# phase). Date.now() is the same wall clock as Python's time.time() on this machine.
FIRST_LOADS_JS = """
document.addEventListener('load', (event) => {
  const img = event.target;
  if (!(img instanceof HTMLImageElement) || !img.naturalWidth) return;
  const now = Date.now();
  if (img.matches('[data-testid="run-preview"]')) window.__firstPreview = window.__firstPreview || now;
  else if (img.matches('[data-candidate] img')) window.__firstThumbnail = window.__firstThumbnail || now;
}, true);
"""
# What the poll reads: both times, and (in case a load event was missed) whether such an image is
# loaded in the page now, the run's status badge and its error. It also keeps the runs in view,
# as an editor watching them would (the thumbnails are loading="lazy").
POLL_JS = """() => {
  const loaded = (selector) => Array.from(document.querySelectorAll(selector))
    .some((img) => img.complete && img.naturalWidth > 0);
  const runs = document.querySelector('#runs');
  if (runs && !window.__scrolled) { runs.scrollIntoView(); window.__scrolled = true; }
  const status = document.querySelector('[data-testid="run-status"]');
  const error = document.querySelector('#runs .error');
  return {
    preview: window.__firstPreview || null,
    thumbnail: window.__firstThumbnail || null,
    previewLoaded: loaded('[data-testid="run-preview"]'),
    thumbnailLoaded: loaded('[data-candidate] img'),
    status: status ? status.textContent.trim() : '',
    error: error ? error.textContent.trim() : '',
  };
}"""


@dataclass
class PassResult:
    """One fresh start's figures, in seconds from the click."""

    name: str
    preload: bool
    preview_s: float | None
    thumbnail_s: float
    loaded_at_click: str
    timing: str
    data_dir: Path


class Install:
    """A fresh data folder set up as ``make run`` does, and ``python -m hoffdesk_images.run`` on it."""

    def __init__(self, data_dir: Path, *, preload: bool, extra_env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "run.log"
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "HOFFDESK_MODELS_DIR")}
        self.env.update(
            {
                "DJANGO_SETTINGS_MODULE": "hoffdesk_images.settings",
                "HOFFDESK_DATA_DIR": str(data_dir),
                "HOFFDESK_ADDRESS": f"127.0.0.1:{self.port}",
                "HOFFDESK_ADMIN_PASSWORD": PASSWORD,
                "HOFFDESK_PRELOAD": "true" if preload else "false",
                "PYTHONUNBUFFERED": "1",
                **extra_env,
            }
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def manage(self, *args: str, stdin: str | None = None) -> None:
        """``manage.py <args>`` on this data folder; ``BenchError`` with its output when it fails."""
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise BenchError(f"manage.py {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")

    def set_up(self) -> None:
        """What scripts/run.sh does before it execs the supervisor, plus one article to generate for."""
        self.manage("migrate", "--no-input", "-v", "0")
        self.manage("collectstatic", "--no-input", "-v", "0")
        self.manage("bootstrap")
        self.manage("import_articles", "-", stdin=json.dumps([ARTICLE]))

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hoffdesk_images.run"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: our signals never reach it by accident
            )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"the server exited with {self.proc.returncode}:\n{log_tail(self.log_path)}")

    def get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def gpu_workers(self) -> list[dict[str, Any]]:
        """The live GPU workers /healthz lists (empty while none has beaten)."""
        status, body = self.get("/healthz")
        if status != 200:
            return []
        return list(json.loads(body).get("gpu_workers") or [])

    def wait_ready(self, timeout: float) -> None:
        """Until the login page answers and the GPU worker's heartbeat has been seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if self.get("/login/")[0] == 200 and self.gpu_workers():
                    return
            except (OSError, http.client.HTTPException, ValueError):
                pass
            time.sleep(0.1)
        raise BenchError(
            f"no dashboard answer with a GPU worker's heartbeat within {timeout:g} s:\n{log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """SIGTERM to the supervisor, which stops its children; if it hangs, kill it and them."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_WAIT_SECONDS)
            return
        except subprocess.TimeoutExpired:
            pass
        # The supervisor names its children's pids in its first line; each leads its own group.
        match = re.search(r"\(web pid (\d+), worker pid (\d+), light worker pid (\d+)\)", log_tail(self.log_path))
        for pid in [proc.pid, *(int(p) for p in (match.groups() if match else ()))]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()


def measure(install: Install, *, form: dict[str, str], pause: float, timeout: float, headed: bool) -> PassResult:
    """Log in, open the article, pause, press Generate; the times to the first preview and thumbnail."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=not headed)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_init_script(FIRST_LOADS_JS)
            page = context.new_page()
            page.set_default_timeout(timeout * 1000)
            page.goto(f"{install.base}/login/?next=/articles/{ARTICLE['slug']}/")
            page.get_by_label("Username").fill(ADMIN)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(f"**/articles/{ARTICLE['slug']}/")
            page.get_by_role("button", name="Generate").wait_for()
            time.sleep(pause)  # the editor reads the page before clicking
            install.check_alive()
            workers = install.gpu_workers()
            loaded_at_click = (workers[0].get("loaded_profile") or "nothing") if workers else "no worker seen"
            if workers and workers[0].get("loading_profile"):
                loaded_at_click += f" (loading {workers[0]['loading_profile']})"
            for label, value in form.items():
                field = page.get_by_label(label, exact=True)
                if label == "Model":
                    field.select_option(value)
                else:
                    field.fill(value)
            clicked_ms = time.time() * 1000
            page.get_by_role("button", name="Generate").click()
            preview_ms: float | None = None
            thumbnail_ms: float | None = None
            deadline = time.monotonic() + timeout
            while thumbnail_ms is None:
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"no candidate thumbnail within {timeout:g} s of the click:\n{log_tail(install.log_path)}"
                    )
                install.check_alive()
                try:
                    seen = page.evaluate(POLL_JS)
                except PlaywrightError:  # the page is navigating (Generate's redirect): ask again
                    time.sleep(0.05)
                    continue
                now_ms = time.time() * 1000
                if seen["status"] in ("Failed", "Cancelled"):
                    raise BenchError(f"the run ended {seen['status']}: {seen['error']}")
                if preview_ms is None and (seen["preview"] or seen["previewLoaded"]):
                    preview_ms = seen["preview"] or now_ms
                if seen["thumbnail"] or seen["thumbnailLoaded"]:
                    thumbnail_ms = seen["thumbnail"] or now_ms
                time.sleep(0.05)
            timing = page.get_by_test_id("run-timing").first.text_content() or ""
        finally:
            browser.close()
    return PassResult(
        name="preload" if install.env["HOFFDESK_PRELOAD"] == "true" else "no preload",
        preload=install.env["HOFFDESK_PRELOAD"] == "true",
        preview_s=None if preview_ms is None else (preview_ms - clicked_ms) / 1000,
        thumbnail_s=(thumbnail_ms - clicked_ms) / 1000,
        loaded_at_click=loaded_at_click,
        timing=" ".join(timing.split()),
        data_dir=install.data_dir,
    )


def one_pass(*, preload: bool, args: argparse.Namespace, form: dict[str, str]) -> PassResult:
    """A fresh data folder, a fresh start, one click; the server is stopped whatever happens."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"hoffdesk-first-image-{'preload' if preload else 'cold'}-"))
    extra_env = {"HOFFDESK_PREVIEW_EVERY": str(args.preview_every)} if args.preview_every is not None else {}
    install = Install(data_dir, preload=preload, extra_env=extra_env)
    try:
        install.set_up()
        install.start()
        install.wait_ready(args.timeout)
        return measure(install, form=form, pause=args.pause, timeout=args.timeout, headed=args.headed)
    finally:
        install.stop()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


def form_values(args: argparse.Namespace) -> dict[str, str]:
    """The Generate form's fields the bench sets (by label); the rest keep their defaults."""
    form: dict[str, str] = {}
    if args.model is not None:
        form["Model"] = args.model
    for label, value in (("Count", args.count), ("Width", args.size), ("Height", args.size), ("Steps", args.steps)):
        if value is not None:
            form[label] = str(value)
    return form


def seconds(value: float | None) -> str:
    return "not seen" if value is None else f"{value:.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=1.0, help="preload / no preload, click to first thumbnail")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds each wait may take")
    parser.add_argument("--pause", type=float, default=10.0, help="seconds between opening the article and clicking")
    parser.add_argument("--model", default=None, help='the form\'s Model (default: HOFFDESK_DEFAULT_MODEL; "" = blank)')
    parser.add_argument("--count", type=int, default=None, help="the form's Count (default: the form's, 4)")
    parser.add_argument("--size", type=int, default=None, help="the form's Width and Height (default: the model's)")
    parser.add_argument("--steps", type=int, default=None, help="the form's Steps (default: the model's)")
    parser.add_argument("--preview-every", type=int, default=None, help="HOFFDESK_PREVIEW_EVERY (default: its own)")
    parser.add_argument("--smoke", action="store_true", help="1 candidate of 128x128, 200 steps, a 5 s pause")
    parser.add_argument("--keep", action="store_true", help="keep both data folders")
    parser.add_argument("--headed", action="store_true", help="show the browser")
    args = parser.parse_args(argv)
    if args.model is None:
        args.model = os.environ.get("HOFFDESK_DEFAULT_MODEL", "tiny-sd")
    if args.smoke:
        # Enough steps that the run is still running when its card polls (once a second) after
        # the first preview, even on a quiet machine: the test asks for a preview time. (32 steps
        # took 0.7 s in a CI run, too short for any poll to see a preview.)
        args.count, args.size, args.steps = args.count or 1, args.size or 128, args.steps or 200
        args.pause = min(args.pause, 5.0)
    form = form_values(args)
    results: list[PassResult] = []
    try:
        for preload in (False, True):
            results.append(one_pass(preload=preload, args=args, form=form))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # Playwright's own timeouts and errors: the figures are meaningless
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    cold, warm = results
    print(machine_line())
    shown = ", ".join(f"{k} {v!r}" for k, v in form.items()) or "all defaults"
    print(
        f"fresh data folder and fresh `python -m hoffdesk_images.run` per pass; Generate form: {shown} "
        f"(the rest: defaults); {args.pause:g} s from opening the article to the click"
    )
    for result in results:
        flag = f"HOFFDESK_PRELOAD={'true' if result.preload else 'false'}"
        print(
            f"{result.name:10} ({flag:22}): click to first preview {seconds(result.preview_s)}, "
            f"click to first thumbnail {seconds(result.thumbnail_s)}; "
            f"loaded at the click: {result.loaded_at_click}; run card: {result.timing or '-'}"
        )
        if args.keep:
            print(f"  data folder kept: {result.data_dir}")
    ratio = warm.thumbnail_s / cold.thumbnail_s
    print(f"ratio preload / no preload, click to first thumbnail: {ratio:.2f} (target below {args.target:g})")
    if warm.preview_s is not None and cold.preview_s is not None:
        print(
            f"ratio preload / no preload, click to first preview: {warm.preview_s / cold.preview_s:.2f} (informational)"
        )
    if ratio >= args.target:
        print(f"MISS: preload is not faster to the first thumbnail: ratio {ratio:.2f}, target below {args.target:g}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
