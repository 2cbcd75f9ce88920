"""What the benchmarks here share: their error, a free loopback port, stopping a server they
started, and the machine line of their summaries.

The benchmarks run as scripts (``.venv/bin/python bench/dashboard.py``), so Python finds this
module beside them and they import it as ``_common``.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess


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
