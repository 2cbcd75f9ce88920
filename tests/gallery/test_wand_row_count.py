"""The article list's row count follows the Magic Wand: when the run card that the wand put in a
row fills in, the same answer carries the row's new "waiting" count (an htmx out-of-band swap),
so the row never says 0 beside a card full of pending candidates."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from generation.models import Candidate, GenerationRun

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true", "HX-Current-URL": "http://testserver/"}


def count_tag(html: str, slug: str) -> str:
    """The opening tag and text of the row's waiting count, or '' when the page has none."""
    found = re.search(rf'<span[^>]*\bid="waiting-count-{re.escape(slug)}"[^>]*>[^<]*</span>', html)
    return found.group(0) if found else ""


def test_the_filled_in_wand_card_brings_the_rows_new_waiting_count(editor_client, article) -> None:
    listing = editor_client.get(reverse("gallery:article_list")).content.decode()
    assert "0 waiting" in count_tag(listing, article.slug)  # the swap's target is on the list

    wand = editor_client.post(reverse("gallery:article_wand", args=[article.slug]), {"style": ""}, headers=HTMX)
    assert wand.status_code == 200
    run = GenerationRun.objects.get(article=article)
    # The worker's part, through the model's own transitions: claim, candidates, success.
    assert run.claim(max_attempts=3)
    run.refresh_from_db()
    for index, seed in enumerate(run.seeds):
        Candidate.objects.create(
            run=run, index=index, seed=seed, image=f"runs/{run.pk:06d}/a1-{index:02d}-seed{seed}.png",
            width=run.width, height=run.height, sha256=f"{index:064x}",
        )  # fmt: skip
    assert run.succeed(load_seconds=0.0, gpu_seconds=1.0)

    card = editor_client.get(reverse("gallery:run_card", args=[run.pk]), headers=HTMX).content.decode()
    tag = count_tag(card, article.slug)
    assert tag, "the finished card does not carry the row's count"
    assert 'hx-swap-oob="true"' in tag
    assert f">{len(run.seeds)} waiting<" in tag
    # A reload shows the same number: the swap and the page cannot disagree.
    listing = editor_client.get(reverse("gallery:article_list")).content.decode()
    assert f">{len(run.seeds)} waiting<" in count_tag(listing, article.slug)


def test_a_card_still_running_carries_no_count(editor_client, article) -> None:
    editor_client.post(reverse("gallery:article_wand", args=[article.slug]), {"style": ""}, headers=HTMX)
    run = GenerationRun.objects.get(article=article)
    card = editor_client.get(reverse("gallery:run_card", args=[run.pk]), headers=HTMX).content.decode()
    assert count_tag(card, article.slug) == ""  # nothing changed yet: no extra queries or swaps
