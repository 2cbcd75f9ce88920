"""The web process never imports torch or diffusers: a fresh interpreter loads every URLconf,
renders the main pages, and checks ``sys.modules``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import os, sys
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.urls import get_resolver, URLResolver
from django.test import Client
from django.contrib.auth import get_user_model
from gallery.models import Article
from generation.services import run_submit

def walk(resolver):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            walk(pattern)
walk(get_resolver())

user = get_user_model().objects.create_superuser("boss", "", "boss-pass-123")
article = Article.objects.create(slug="a", title="A title", summary="s")
run = run_submit(article=article, model="tiny-sd", seed=1, count=1)
client = Client()
assert client.get("/login/").status_code == 200
client.force_login(user)
for url in ["/", "/articles/a/", f"/runs/{run.pk}/", "/admin/", "/admin/generation/generationrun/",
            f"/admin/generation/generationrun/{run.pk}/change/", "/admin/generation/stylepreset/"]:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
response = client.post("/articles/a/generate/", {"model": "tiny-sd", "count": "2"})
assert response.status_code == 302, response.status_code
print("NUMPY:" + str("numpy" in sys.modules))
import django_q.cluster  # the worker's module graph minus our task: still torch-free
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "diffusers", "transformers", "accelerate"})
print("HEAVY:" + ",".join(heavy))
"""


def test_web_process_never_imports_torch_or_diffusers(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "hoffdesk_images.settings",
        "HOFFDESK_DATA_DIR": str(tmp_path),
        "HOFFDESK_ALLOWED_HOSTS": "testserver",
    }
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    heavy = [line for line in result.stdout.splitlines() if line.startswith("HEAVY:")]
    assert heavy, result.stdout
    assert heavy[-1] == "HEAVY:", f"the web process imported: {heavy[-1][6:500]}"
    # NumPy is no torch, but ~20 MB in every web process for nothing: the pages draw none (the
    # social card imports it on first use).
    assert "NUMPY:False" in result.stdout.splitlines(), "a page or a tag library imported NumPy"
