"""The Costs page (issue 20, part 1): a seeded history gives exact sums, on the page and in the CSV."""

from __future__ import annotations

import csv
import io
from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from gallery.costs import cost_report, window_start
from gallery.models import Article, Publication
from generation.models import Candidate, GenerationRun, StylePreset
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def monday(weeks_ago: int) -> datetime:
    """Monday 00:00 of this week (0) or an earlier one, in the current time zone."""
    today = timezone.localdate()
    day = today - timedelta(days=today.weekday()) - timedelta(weeks=weeks_ago)
    return timezone.make_aware(datetime.combine(day, time.min))


def seed_run(article, preset, *, model, at, gpu, joules, estimated=False, reviews=(), cloud=None, engine=""):  # type: ignore[no-untyped-def]
    run = GenerationRun.objects.create(
        article=article,
        preset=preset,
        model_profile=model,
        engine_profile=engine,
        prompt="a lighthouse",
        width=64,
        height=64,
        steps=1,
        guidance=0.0,
        base_seed=1,
        count=max(len(reviews), 1),
        status=GenerationRun.Status.SUCCEEDED if reviews else GenerationRun.Status.FAILED,
        queued_at=at,
        finished_at=at,
        gpu_seconds=gpu,
        energy_joules=joules,
        energy_estimated=estimated,
        cloud_cost=cloud,
    )
    for index, review in enumerate(reviews):
        Candidate.objects.create(
            run=run, index=index, seed=1 + index, image=f"runs/x/{run.pk}-{index}.png", width=64, height=64,
            sha256="0" * 64, review_status=review,
        )  # fmt: skip
    return run


@pytest.fixture
def history(settings):  # type: ignore[no-untyped-def]
    """Two weeks of runs: FLUX measured, SDXL Turbo estimated, a cloud run, a failed run and one
    outside the 12-week window. One article's hero is published: its two runs made 8 images."""
    settings.HOFFDESK_ELECTRICITY_PRICE = 0.40
    settings.HOFFDESK_CURRENCY = "USD"
    settings.HOFFDESK_CLOUD_MODEL = "gpt-image-1"
    settings.HOFFDESK_CLOUD_PRICES = {"gpt-image-1": Decimal("0.063")}
    hero_article = Article.objects.create(slug="hero", title="Hero", summary="s", content_type="technical", tone="calm")
    other = Article.objects.create(slug="other", title="Other", summary="s", content_type="technical", tone="calm")
    photo = StylePreset.objects.create(name="Costs photo", slug="costs-photo", model_profile="flux-dev-nf4")
    sketch = StylePreset.objects.create(name="Costs sketch", slug="costs-sketch", model_profile="sdxl-turbo")
    last_week, this_week = monday(1) + timedelta(days=1, hours=10), monday(0) + timedelta(hours=1)
    p, r, a, w = "published", "rejected", "approved", "pending"
    first = seed_run(
        hero_article, photo, model="flux-dev-nf4", at=last_week, gpu=120, joules=36_000, reviews=[p, r, r, r]
    )
    seed_run(other, sketch, model="sdxl-turbo", at=last_week, gpu=30, joules=18_000, estimated=True, reviews=[a, w])
    seed_run(hero_article, photo, model="flux-dev-nf4", at=this_week, gpu=100, joules=54_000, reviews=[r, r, r, r])
    seed_run(other, sketch, model="gpt-image-1", at=this_week, gpu=None, joules=None, cloud=Decimal("0.126"),
             reviews=[w, w])  # fmt: skip
    seed_run(hero_article, photo, model="flux-dev-nf4", at=this_week, gpu=None, joules=None)  # failed: nothing made
    seed_run(other, photo, model="flux-dev-nf4", at=monday(20), gpu=999, joules=3_600_000, reviews=[r])  # too old
    Publication.objects.create(
        article=hero_article,
        candidate=first.candidates.get(index=0),
        alt_text="A lighthouse",
        status=Publication.Status.PUBLISHED,
        finished_at=this_week,
    )
    return {"last_week": monday(1).date(), "this_week": monday(0).date()}


def test_the_report_sums_each_week_and_model_exactly(history) -> None:
    report = cost_report(weeks=12)
    table = {
        (row.week, row.model): (
            row.sums.runs,
            row.sums.images,
            row.sums.gpu_seconds,
            row.sums.kwh,
            row.sums.estimated_runs,
            row.electricity_cost,
            row.cloud_equivalent,
            row.cloud_spent,
        )
        for row in report.rows
    }
    last, this = history["last_week"], history["this_week"]
    D = Decimal
    assert table == {
        (last, "flux-dev-nf4"): (1, 4, 120.0, D("0.010000"), 0, D("0.0040"), D("0.2520"), D("0.0000")),
        (last, "sdxl-turbo"): (1, 2, 30.0, D("0.005000"), 1, D("0.0020"), D("0.1260"), D("0.0000")),
        (this, "flux-dev-nf4"): (1, 4, 100.0, D("0.015000"), 0, D("0.0060"), D("0.2520"), D("0.0000")),
        # the cloud run: its price is what it cost; its images are not priced again as "cloud equivalent"
        (this, "gpt-image-1"): (1, 2, 0.0, D("0.000000"), 0, D("0.0000"), D("0.0000"), D("0.1260")),
    }
    assert [row.week for row in report.rows] == [this, this, last, last]  # newest week first
    assert (report.totals.images, report.totals.gpu_seconds, report.totals.kwh) == (12, 250.0, D("0.030000"))
    assert (report.electricity_cost, report.cloud_equivalent, report.cloud_spent) == (
        D("0.0120"),
        D("0.6300"),
        D("0.1260"),
    )
    assert report.since == window_start(12).date() and len(report.weeks) == 12


def test_cost_per_published_hero_counts_every_image_of_the_articles_runs(history) -> None:
    heroes = cost_report(weeks=12).heroes
    # the hero's article: two runs, 8 images (7 rejected), 0.025 kWh at 0.40
    assert (heroes.heroes, heroes.sums.images, heroes.sums.kwh) == (1, 8, Decimal("0.025000"))
    assert heroes.cost_per_hero == Decimal("0.0100")
    assert heroes.images_per_hero == 8
    assert heroes.cloud_equivalent_per_hero == Decimal("0.5040")


def test_approval_rate_per_preset(history) -> None:
    presets = {row.preset: row for row in cost_report(weeks=12).presets}
    photo, sketch = presets["Costs photo"], presets["Costs sketch"]
    assert (photo.images, photo.kept, photo.rejected, photo.pending) == (8, 1, 7, 0)
    assert photo.approval_rate == 1 / 8
    assert photo.gpu_seconds == 220.0 and photo.gpu_seconds_per_kept == 220.0
    assert (sketch.images, sketch.kept, sketch.rejected, sketch.pending) == (4, 1, 0, 3)
    assert sketch.approval_rate == 1.0


def test_the_page_shows_the_sums_and_three_charts(history, client, django_assert_max_num_queries) -> None:
    client.force_login(make_user("costs-editor", "editors"))
    with django_assert_max_num_queries(8):  # the report is 4 of them, whatever the size of the history
        response = client.get("/costs/")
    assert response.status_code == 200
    page = response.content.decode()
    for text in ("0.0120 USD", "0.6300 USD", "0.1260 USD", "0.0100 USD", "0.030 kWh", "12.5%"):
        assert text in page, text
    assert page.count('<svg class="chart"') == 3
    assert 'data-chart="cost"' in page and 'data-chart="energy"' in page and 'data-chart="approval"' in page
    assert "1 of 4 runs estimated" in page  # the SDXL Turbo run had no counter


def test_the_csv_matches_the_table(history, client) -> None:
    client.force_login(make_user("costs-csv", "editors"))
    response = client.get("/costs.csv?weeks=12")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    last, this = history["last_week"].isoformat(), history["this_week"].isoformat()
    assert rows == [
        [
            "week", "model", "runs", "images", "cloud_images", "gpu_seconds", "energy_kwh", "estimated_runs",
            "electricity_cost", "cloud_equivalent", "cloud_spent", "currency",
        ],
        [this, "flux-dev-nf4", "1", "4", "0", "100.0", "0.015000", "0", "0.0060", "0.2520", "0.0000", "USD"],
        [this, "gpt-image-1", "1", "2", "2", "0.0", "0.000000", "0", "0.0000", "0.0000", "0.1260", "USD"],
        [last, "flux-dev-nf4", "1", "4", "0", "120.0", "0.010000", "0", "0.0040", "0.2520", "0.0000", "USD"],
        [last, "sdxl-turbo", "1", "2", "0", "30.0", "0.005000", "1", "0.0020", "0.1260", "0.0000", "USD"],
    ]  # fmt: skip


def test_the_window_is_a_number_of_weeks_and_a_bad_one_is_refused(history, client) -> None:
    client.force_login(make_user("costs-weeks", "editors"))
    one_week = client.get("/costs.csv?weeks=1")
    assert [row[0] for row in csv.reader(io.StringIO(one_week.content.decode()))][1:] == [
        history["this_week"].isoformat()
    ] * 2
    bad = client.get("/costs/?weeks=many")
    assert bad.status_code == 400
    assert "weeks" in bad.content.decode()


def test_looking_needs_an_editor(history, client) -> None:
    assert client.get("/costs/").status_code == 302  # to the login page
    client.force_login(make_user("costs-onlooker"))
    assert client.get("/costs/").status_code == 403
    assert client.get("/costs.csv").status_code == 403


def test_an_empty_history_shows_zeroes_and_says_so(client) -> None:
    client.force_login(make_user("costs-new", "editors"))
    page = client.get("/costs/").content.decode()
    assert "No runs finished in these weeks." in page
    assert page.count("Nothing to show for these weeks yet.") == 3
    assert "0.0000 USD" in page
