"""What the benchmarks here share: their error, a free loopback port, starting moto's S3 server
and stopping a server they started, and the machine line of their summaries.

The benchmarks run as scripts (``.venv/bin/python bench/dashboard.py``), so Python finds this
module beside them and they import it as ``_common``. (The test suite's S3 fixture starts moto the
same way in tests/s3_fixtures.py, on its own: importing this file as ``bench._common`` there would
give mypy one file under two module names.)
"""

from __future__ import annotations

import http.client
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path


class BenchError(Exception):
    """Something that makes the figures meaningless: exit non-zero."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Ends a server started by a benchmark: SIGTERM, then SIGKILL after 20 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def machine_line() -> str:
    """The summary line that says what machine the figures come from."""
    return (
        f"machine: {os.cpu_count()} CPUs, {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}"
    )


def start_moto_server(
    port: int, log_path: Path, *, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.Popen[bytes]:
    """``moto_server`` from this virtualenv on 127.0.0.1:``port``, returned once it answers.

    Its output goes to ``log_path``; it runs in a session of its own, so stopping it never
    signals the caller. ``BenchError`` (with the log's tail) when it is not installed, exits, or
    does not answer within ``timeout`` seconds (then it is stopped again).
    """
    moto_server = Path(sys.executable).parent / "moto_server"
    if not moto_server.exists():
        raise BenchError(f"{moto_server} is missing: install moto[server] in this virtualenv")
    if env is None:
        env = dict(os.environ)
        env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)  # no IAM keys wanted: moto accepts any
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(moto_server), "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"moto_server exited with {proc.returncode}:\n{log_tail(log_path)}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                conn.request("GET", "/moto-api/")
                conn.getresponse().read()
            finally:
                conn.close()
        except OSError:
            time.sleep(0.1)
            continue
        return proc
    stop_server(proc)
    raise BenchError(f"moto_server did not answer within {timeout:g} s:\n{log_tail(log_path)}")


def log_tail(log_path: Path) -> str:
    """The last 4,000 characters of a server's log, for an error message."""
    return log_path.read_text(errors="replace")[-4000:] if log_path.exists() else "(no log)"
