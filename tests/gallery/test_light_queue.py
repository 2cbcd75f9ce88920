"""The light cluster: a publish finishes while the GPU worker is busy with a long run."""

from __future__ import annotations

import pytest
from django.conf import settings

from gallery.models import Publication
from gallery.publishing import publication_request
from generation.models import GenerationRun
from generation.services import run_cancel, run_submit
from tests.conftest import make_user, wait_finished, wait_for
from tests.gallery.test_publishing import approved_candidate

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_publish_completes_while_the_gpu_worker_is_busy_with_a_long_run(start_worker, article) -> None:
    assert "light" in settings.Q_CLUSTER["ALT_CLUSTERS"]  # type: ignore[operator]
    gpu = start_worker()
    light = start_worker(Q_CLUSTER_NAME="light")
    editor = make_user("editor", "editors")
    long_run = run_submit(article=article, model="tiny-sd", seed=1, count=1, width=128, height=128, steps=1000)

    def gpu_busy() -> bool:
        long_run.refresh_from_db()
        return long_run.status == GenerationRun.Status.RUNNING and long_run.progress_step > 0

    wait_for(gpu_busy, 90, "the long run to start", gpu)
    publication = publication_request(
        candidate=approved_candidate(article, editor), by=editor, alt_text="A lighthouse", focal=(0.5, 0.5)
    )

    def published() -> bool:
        publication.refresh_from_db()
        return publication.is_finished

    wait_for(published, 90, "the publication to finish", light)
    assert publication.status == Publication.Status.PUBLISHED, publication.error
    long_run.refresh_from_db()
    assert long_run.status == GenerationRun.Status.RUNNING  # it never waited for the GPU
    assert long_run.progress_step < long_run.progress_total
    run_cancel(run=long_run)
    wait_finished(long_run, worker=gpu)
    assert long_run.status == GenerationRun.Status.CANCELLED
