"""The README's run command: dashboard on 127.0.0.1:8000 with its worker; Ctrl-C stops both."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Dashboard:
    def __init__(self, data_dir: Path, address: str | None, **env: str) -> None:
        self.address = address or "127.0.0.1:8000"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("HOFFDESK_") and k != "DATABASE_URL"}
        full_env.update({"HOFFDESK_DATA_DIR": str(data_dir), "HOFFDESK_TORCH_THREADS": "2", **env})
        if address:
            full_env["HOFFDESK_ADDRESS"] = address
        self.env = full_env
        self.log = data_dir / f"run-{time.monotonic_ns()}.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["bash", "scripts/run.sh"], cwd=ROOT, env=full_env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT
        )

    def url(self, path: str) -> str:
        return f"http://{self.address}{path}"

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                with urllib.request.urlopen(self.url("/login/"), timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"dashboard not up after {timeout} s\n{self.output()}")

    def ctrl_c(self) -> int:
        # What the terminal does on Ctrl-C: SIGINT to the foreground process (our supervisor).
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=60)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=180
        )


def login(dashboard: Dashboard, username: str, password: str) -> urllib.request.OpenerDirector:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(dashboard.url("/login/")).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, page
    form = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)})
    opener.open(dashboard.url("/login/"), data=form.encode())
    return opener


def test_run_command_serves_dashboard_with_worker_and_ctrl_c_stops_both(tmp_path: Path) -> None:
    address = None if port_is_free(8000) else f"127.0.0.1:{free_port()}"
    data_dir = tmp_path / "data"
    dashboard = Dashboard(data_dir, address)
    try:
        dashboard.wait_ready()
        first_output = dashboard.output()
        # Not a terminal: the generated password goes to a file only its owner can read, never a log.
        password_file = data_dir / "admin-password.txt"
        assert "admin-password.txt" in first_output and password_file.stat().st_mode & 0o777 == 0o600
        password = password_file.read_text().strip()
        assert password not in first_output

        opener = login(dashboard, "admin", password)
        home = opener.open(dashboard.url("/")).read().decode()
        assert "Articles" in home and "images are placeholders" in home

        articles = tmp_path / "articles.json"
        articles.write_text(json.dumps([{"slug": "hello", "title": "Hello", "summary": "First post"}]))
        assert dashboard.manage("import_articles", str(articles)).returncode == 0
        generated = dashboard.manage(
            "generate",
            "hello",
            "--model",
            "tiny-sd",
            "--seed",
            "1234",
            "--count",
            "2",
            "--width",
            "128",
            "--height",
            "128",
            "--steps",
            "3",
            "--wait",
            "--json",
        )
        assert generated.returncode == 0, generated.stderr
        result = json.loads(generated.stdout.strip().splitlines()[-1])
        assert result["status"] == "succeeded"
        assert [c["seed"] for c in result["candidates"]] == [1234, 1235]
        image = opener.open(dashboard.url(f"/candidates/{result['candidates'][0]['id']}/image.png"))
        assert image.headers["Content-Type"] == "image/png"
    finally:
        code = dashboard.ctrl_c()
    assert code == 0, dashboard.output()
    assert "[run] stopped" in dashboard.output()
    assert port_is_free(int(dashboard.address.rsplit(":", 1)[1]))
    pids = re.search(r"web pid (\d+), worker pid (\d+), light worker pid (\d+)", dashboard.output())
    assert pids, dashboard.output()
    for pid in pids.groups():
        # The worker's children too: nothing in the web's or the worker's process group is left.
        assert subprocess.run(["pgrep", "-g", pid], capture_output=True).returncode == 1, f"group {pid} still runs"

    # A second start keeps the admin account and prints no new password.
    again = Dashboard(data_dir, address)
    try:
        again.wait_ready()
    finally:
        assert again.ctrl_c() == 0
    assert "Created the admin account" not in again.output()
