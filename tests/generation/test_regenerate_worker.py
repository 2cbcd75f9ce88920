"""Regenerated runs through a real ``qcluster`` worker: an exact re-run gives the same bytes,
variations keep the seed and blend in new ones, and every candidate gets its thumbnails."""

from __future__ import annotations

import pytest

from generation.engine.metadata import read_recipe
from generation.models import Candidate, GenerationRun, candidate_storage
from generation.services import run_regenerate, run_submit
from generation.thumbnails import THUMBNAIL_WIDTHS, thumbnail_name
from tests.conftest import wait_finished, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def succeeded(run: GenerationRun, worker) -> list[Candidate]:  # type: ignore[no-untyped-def]
    wait_finished(run, worker=worker)
    assert run.status == GenerationRun.Status.SUCCEEDED, f"{run.error}\n{worker.output()[-3000:]}"
    return list(run.candidates.order_by("index"))


def stored_bytes(candidate: Candidate) -> bytes:
    with candidate_storage().open(str(candidate.image.name), "rb") as fh:
        return fh.read()


def test_exact_rerun_reproduces_the_bytes_and_variations_keep_the_seed(start_worker, article) -> None:
    worker = start_worker()
    source = run_submit(article=article, model="tiny-sd", count=2, width=64, height=64, steps=3, seed=4242)
    originals = succeeded(source, worker)
    assert [c.seed for c in originals] == [4242, 4243]

    exact = run_regenerate(source=source, mode="exact")
    variations = run_regenerate(source=source, mode="variations", candidate=originals[0], variation_strength=0.3)
    again = succeeded(exact, worker)
    varied = succeeded(variations, worker)

    # Exact: the same seeds and recipe give the same bytes, candidate by candidate.
    assert exact.parent_id == source.pk and exact.regenerate_mode == "exact"
    assert [c.seed for c in again] == [c.seed for c in originals]
    assert [c.sha256 for c in again] == [c.sha256 for c in originals]
    assert [stored_bytes(c) for c in again] == [stored_bytes(c) for c in originals]

    # Variations: candidate 0's seed everywhere, a distinct variation seed each, new images.
    assert variations.parent_id == source.pk and len(varied) == source.count
    assert all(c.seed == originals[0].seed for c in varied)
    variation_seeds = [c.variation_seed for c in varied]
    assert None not in variation_seeds and len(set(variation_seeds)) == len(varied)
    assert variation_seeds == variations.variation_seeds
    hashes = [c.sha256 for c in varied]
    assert len(set(hashes)) == len(hashes)
    assert not set(hashes) & {c.sha256 for c in originals}
    for candidate in varied:
        recipe = read_recipe(stored_bytes(candidate))
        assert recipe["seed"] == originals[0].seed
        assert recipe["subseed"] == candidate.variation_seed
        assert recipe["subseed_strength"] == pytest.approx(0.3)

    # The worker makes every thumbnail width of every candidate right after the run succeeds,
    # before anyone asks (nothing in this test requests one).
    storage = candidate_storage()
    names = [thumbnail_name(c.sha256, w) for c in originals + again + varied for w in THUMBNAIL_WIDTHS]
    wait_for(lambda: all(storage.exists(name) for name in names), 30, "the worker's thumbnails", worker)
