"""One command for one machine: the web server, the GPU worker and the light worker together.

``python -m hoffdesk_images.run`` starts ``runserver``, ``qcluster`` (the GPU cluster) and
``qcluster`` with ``Q_CLUSTER_NAME=light`` (publishing and housekeeping, which never wait behind
a GPU run) as children in their own process groups, so the terminal's Ctrl-C reaches only this
supervisor. It then sends SIGTERM to each child's main process (django-q2 drains gracefully on
that; a signal to its whole group can leave it hanging), waits, and kills whatever is left. If
any child dies, the others are stopped too, and the exit status says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 20


def children_commands(address: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each child's command line and the environment variables it adds."""
    manage = [sys.executable, str(ROOT / "manage.py")]
    return {
        "web": ([*manage, "runserver", address, "--noreload"], {}),
        "worker": ([*manage, "qcluster"], {}),
        "light worker": ([*manage, "qcluster"], {"Q_CLUSTER_NAME": "light"}),
    }


def stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in processes.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for name, proc in processes.items():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"[run] {name} did not stop in {STOP_GRACE_SECONDS} s; killing it", flush=True)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    address = os.environ.get("HOFFDESK_ADDRESS", "127.0.0.1:8000")
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    processes = {
        name: subprocess.Popen(command, cwd=ROOT, env={**os.environ, **extra_env}, start_new_session=True)
        for name, (command, extra_env) in children_commands(address).items()
    }
    pids = ", ".join(f"{name} pid {proc.pid}" for name, proc in processes.items())
    print(f"[run] dashboard at http://{address}/ with its workers ({pids}); Ctrl-C stops all", flush=True)
    exit_code = 0
    while not stopping:
        dead = [name for name, proc in processes.items() if proc.poll() is not None]
        if dead:
            print(f"[run] {', '.join(dead)} stopped unexpectedly; stopping the rest", flush=True)
            exit_code = 1
            break
        time.sleep(0.2)
    print("[run] stopping web server and workers…", flush=True)
    stop(processes)
    print("[run] stopped", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
