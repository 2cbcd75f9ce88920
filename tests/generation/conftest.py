"""Fixtures for the engine tests that run the tiny models in-process, and a slow-saving worker
(optionally as another host) for the fault and several-box tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Worker, worker_env


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty models folder per test module; the tiny models are built into it on first use."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def fixed_threads() -> Iterator[None]:
    """Two torch threads for the test: byte-identical PNGs need the same thread count
    (docs/design.md). Not autouse, so the database tests here never import torch; an engine
    module asks for it with `pytestmark = pytest.mark.usefixtures("fixed_threads")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


# A qcluster whose candidate saves are slow: after each PNG it writes the saved name to
# $FAULT_MARKER and sleeps $FAULT_SAVE_PAUSE seconds. With $FAULT_HOSTNAME (and started in a
# UTS namespace of its own, ``unshare --uts``) it is a worker on another host, so the sweep
# judges it by its heartbeat and not by its pid. django-q2 forks its worker processes from
# this one (Linux, Python 3.11: fork), so they inherit the wrapped storage.
SLOW_SAVE_QCLUSTER = r"""
import os, socket, sys, time
from pathlib import Path

sys.path.insert(0, os.environ["FAULT_ROOT"])
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hoffdesk_images.settings")
if os.environ.get("FAULT_HOSTNAME"):
    socket.sethostname(os.environ["FAULT_HOSTNAME"])
import django

django.setup()
from generation import tasks

real_storage = tasks.candidate_storage


class SlowSave:
    def __init__(self, real):
        self.real = real

    def save(self, name, content, max_length=None):
        saved = self.real.save(name, content, max_length=max_length)
        with open(os.environ["FAULT_MARKER"], "a") as marker:
            marker.write(saved + "\n")
        time.sleep(float(os.environ["FAULT_SAVE_PAUSE"]))
        return saved

    def __getattr__(self, attr):
        return getattr(self.real, attr)


tasks.candidate_storage = lambda: SlowSave(real_storage())
from django.core.management import execute_from_command_line

execute_from_command_line(["manage.py", "qcluster"])
"""


def can_make_uts_namespace() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--uts", "true"], capture_output=True).returncode == 0


@pytest.fixture
def start_slow_saver(start_worker, tmp_path: Path) -> Iterator[Callable[..., tuple[Worker, Path]]]:
    """Start a slow-saving qcluster (``SLOW_SAVE_QCLUSTER``); returns it and its marker file."""
    started: list[Worker] = []

    def start(pause: float, hostname: str = "", **env: str) -> tuple[Worker, Path]:
        marker = tmp_path / f"saved-{len(started)}.txt"
        log = tmp_path / f"slow-qcluster-{len(started)}.log"
        command = [sys.executable, "-c", SLOW_SAVE_QCLUSTER]
        if hostname:
            command = ["unshare", "--uts", *command]
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=worker_env(
                FAULT_ROOT=str(ROOT),
                FAULT_MARKER=str(marker),
                FAULT_SAVE_PAUSE=str(pause),
                FAULT_HOSTNAME=hostname,
                **env,
            ),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = Worker(proc, log)
        started.append(worker)
        return worker, marker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            os.killpg(worker.proc.pid, signal.SIGCONT)  # a stopped cluster cannot stop
        worker.stop()
