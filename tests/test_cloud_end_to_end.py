"""Make in the cloud, end to end, against a real OpenAI Images API server: a second HoffDesk
instance started by the test (its own data folder, SQLite database, API token, web server and
GPU worker on the tiny model), never the real cloud. It stands for a service on another machine.

This instance's own light worker (a real qcluster) runs the cloud run through the official
``openai`` client; the candidates land here like any others, labelled as cloud images.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from generation.models import CloudSpend, GenerationRun
from tests.conftest import ROOT, TORCH_THREADS, wait_finished

pytestmark = [pytest.mark.worker, pytest.mark.slow]

PRICE = Decimal("0.04")


@dataclass
class CloudInstance:
    url: str
    token: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def cloud_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudInstance]:
    """The second instance, started once per session: migrate, a token, runserver and qcluster."""
    data = tmp_path_factory.mktemp("cloud-instance")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOFFDESK_") and k != "DATABASE_URL"}
    env.update(
        HOFFDESK_DATA_DIR=str(data),
        HOFFDESK_TORCH_THREADS=TORCH_THREADS,
        HOFFDESK_HEARTBEAT_INTERVAL="0.5",
        HOFFDESK_PRELOAD="false",
        PYTHONUNBUFFERED="1",
    )
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--no-input"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    made = subprocess.run(
        [*manage, "create_api_token", "cloud"], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    token = made.stdout.strip().splitlines()[-1]
    port = _free_port()
    log = data / "instance.log"
    procs = [
        subprocess.Popen(
            [*manage, *command],
            cwd=ROOT,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for command in (["runserver", "--noreload", f"127.0.0.1:{port}"], ["qcluster"])
    ]
    instance = CloudInstance(url=f"http://127.0.0.1:{port}/v1", token=token, log=log)
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{instance.url}/models", timeout=2)
        except urllib.error.HTTPError:
            break  # 401 without a token: it answers
        except OSError:
            assert time.monotonic() < deadline, instance.output()
            time.sleep(0.2)
    yield instance
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def cloud_settings(settings, cloud_instance: CloudInstance) -> dict[str, str]:
    """This instance's cloud settings (a budget of two images), for its web and its light worker."""
    env = {
        "HOFFDESK_CLOUD_API_KEY": cloud_instance.token,
        "HOFFDESK_CLOUD_BASE_URL": cloud_instance.url,
        "HOFFDESK_CLOUD_MODEL": "tiny-sd",
        "HOFFDESK_CLOUD_PRICES": f"tiny-sd={PRICE}",
        "HOFFDESK_CLOUD_SIZE": "64x64",
        "HOFFDESK_CLOUD_MONTHLY_BUDGET": str(2 * PRICE),
        "HOFFDESK_CURRENCY": "USD",
    }
    settings.HOFFDESK_CLOUD_API_KEY = cloud_instance.token
    settings.HOFFDESK_CLOUD_BASE_URL = cloud_instance.url
    settings.HOFFDESK_CLOUD_MODEL = "tiny-sd"
    settings.HOFFDESK_CLOUD_PRICES = {**settings.HOFFDESK_CLOUD_PRICES, "tiny-sd": PRICE}
    settings.HOFFDESK_CLOUD_SIZE = "64x64"
    settings.HOFFDESK_CLOUD_MONTHLY_BUDGET = float(2 * PRICE)
    settings.HOFFDESK_CURRENCY = "USD"
    return env


def test_make_in_the_cloud_makes_labelled_candidates_and_the_budget_refuses_the_third_image(
    cloud_instance: CloudInstance, cloud_settings, start_worker, editor_client, article
) -> None:
    light = start_worker(Q_CLUSTER_NAME="light", **cloud_settings)
    page = editor_client.get(article.get_absolute_url()).content.decode()
    assert "tiny-sd at 64\u00d764: <strong>0.04 USD</strong> an image · 0.08 USD left of 0.08 USD" in page

    answer = editor_client.post(f"/articles/{article.slug}/cloud/", {"count": "2"}, follow=True)
    assert "queued in the cloud: 2 image(s), 0.08 USD" in answer.content.decode()
    run = wait_finished(GenerationRun.objects.get(), timeout=180, worker=light)
    assert run.status == "succeeded", f"{run.error}\n{cloud_instance.output()[-3000:]}"
    assert run.cloud_cost == 2 * PRICE and run.candidates.count() == 2
    for candidate in run.candidates.all():
        with candidate.image.open("rb") as fh, Image.open(io.BytesIO(fh.read())) as image:
            recipe = json.loads(image.info["hoffdesk"])
            assert image.size == (64, 64) and image.format == "PNG"
        assert recipe["engine"] == "cloud" and recipe["model"] == "tiny-sd" and recipe["reproducible"] is False
        assert recipe["price"].startswith("0.04") and recipe["revised_prompt"] == run.prompt
    # The second instance really made them, through its OpenAI Images endpoint.
    assert cloud_instance.output().count('"POST /v1/images/generations HTTP/1.1" 200') >= 2

    page = editor_client.get(article.get_absolute_url()).content.decode()
    assert page.count('data-testid="cloud-label"') == 2 and "cloud: not reproducible" in page
    # No seed to re-run: the tiles say so and offer no Regenerate (nor its key).
    assert page.count("no seed (cloud)") == 2 and 'data-regenerate-url=""' in page
    for candidate in run.candidates.all():
        assert f'href="/candidates/{candidate.pk}/regenerate/"' not in page

    refused = editor_client.post(f"/articles/{article.slug}/cloud/", {"count": "1"}, follow=True).content.decode()
    assert "0.00 USD is left of 0.08 USD" in refused
    assert GenerationRun.objects.count() == 1
    assert CloudSpend.objects.get().spent == 2 * PRICE
