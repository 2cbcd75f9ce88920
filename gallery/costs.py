"""What images cost: local electricity against cloud prices (the Costs page and its CSV).

Everything is summed in SQL in four queries whatever the history's size: the runs grouped by
week, model and preset (images made are the succeeded runs' ``count``: no candidate row is
touched, and no per-row date function runs over 200,000 candidates), the candidates' review
states grouped by preset, and two for the published heroes. Python only prices the sums and
lays out the charts.

Money is ``Decimal`` in ``HOFFDESK_CURRENCY``: kWh x ``HOFFDESK_ELECTRICITY_PRICE`` for local
runs, the price table (``generation.cloud_prices``) for what the same images would have cost in
the cloud, and the runs' own ``cloud_cost`` for what the cloud engine really spent.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import CharField, Count, DateField, Q, Sum, Value
from django.db.models.functions import Coalesce, NullIf, Trunc
from django.utils import timezone

from gallery.models import Publication
from generation.models import Candidate, GenerationRun

JOULES_PER_KWH = Decimal(3_600_000)
MONEY = Decimal("0.0001")
KWH = Decimal("0.000001")
KEPT = (Candidate.Review.APPROVED, Candidate.Review.PUBLISHED, Candidate.Review.UNPUBLISHED)
NO_PRESET = "(no preset)"
DEFAULT_WEEKS = 12
MAX_WEEKS = 104


@dataclass(frozen=True)
class Pricing:
    """The prices the page uses, read from settings once per request."""

    currency: str
    electricity_per_kwh: Decimal
    cloud_model: str
    cloud_price: Decimal | None  # one image from ``cloud_model``; None: not in the table

    @classmethod
    def from_settings(cls) -> Pricing:
        model = getattr(settings, "HOFFDESK_CLOUD_MODEL", "") or "gpt-image-1"
        return cls(
            currency=settings.HOFFDESK_CURRENCY,
            electricity_per_kwh=Decimal(str(settings.HOFFDESK_ELECTRICITY_PRICE)),
            cloud_model=model,
            cloud_price=settings.HOFFDESK_CLOUD_PRICES.get(model),
        )

    def electricity(self, kwh: Decimal) -> Decimal:
        return (kwh * self.electricity_per_kwh).quantize(MONEY)

    def cloud_equivalent(self, images: int) -> Decimal | None:
        return None if self.cloud_price is None else (self.cloud_price * images).quantize(MONEY)


def kwh_of(joules: float | None) -> Decimal:
    return (Decimal(str(joules or 0)) / JOULES_PER_KWH).quantize(KWH)


@dataclass
class Sums:
    """One group's sums: runs, images (local and cloud), GPU seconds, energy, cloud spend."""

    runs: int = 0
    images: int = 0
    cloud_images: int = 0
    gpu_seconds: float = 0.0
    energy_joules: float = 0.0
    estimated_runs: int = 0
    cloud_spent: Decimal = Decimal(0)

    def add(self, other: Sums) -> None:
        self.runs += other.runs
        self.images += other.images
        self.cloud_images += other.cloud_images
        self.gpu_seconds += other.gpu_seconds
        self.energy_joules += other.energy_joules
        self.estimated_runs += other.estimated_runs
        self.cloud_spent += other.cloud_spent

    @property
    def local_images(self) -> int:
        return self.images - self.cloud_images

    @property
    def kwh(self) -> Decimal:
        return kwh_of(self.energy_joules)

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600


@dataclass
class CostRow:
    """One week and model: its sums priced."""

    week: date
    model: str
    sums: Sums
    pricing: Pricing

    @property
    def electricity_cost(self) -> Decimal:
        return self.pricing.electricity(self.sums.kwh)

    @property
    def cloud_equivalent(self) -> Decimal | None:
        return self.pricing.cloud_equivalent(self.sums.local_images)

    @property
    def cloud_spent(self) -> Decimal:
        return self.sums.cloud_spent.quantize(MONEY)


@dataclass
class PresetRow:
    """A preset's images by review state, and what its runs used: which presets waste GPU time."""

    preset: str
    images: int = 0
    kept: int = 0
    rejected: int = 0
    pending: int = 0
    gpu_seconds: float = 0.0
    energy_joules: float = 0.0

    @property
    def decided(self) -> int:
        return self.kept + self.rejected

    @property
    def approval_rate(self) -> float | None:
        """Kept (approved, published) out of the decided; None while nothing is decided."""
        return self.kept / self.decided if self.decided else None

    @property
    def approval_percent(self) -> str:
        """ "12.5%", or "" while nothing is decided."""
        rate = self.approval_rate
        return "" if rate is None else f"{rate:.1%}"

    @property
    def gpu_seconds_per_kept(self) -> float | None:
        return self.gpu_seconds / self.kept if self.kept else None


@dataclass
class HeroCosts:
    """Published heroes and everything their articles' runs made, rejected images included."""

    heroes: int
    sums: Sums
    pricing: Pricing

    @property
    def electricity_cost(self) -> Decimal:
        return self.pricing.electricity(self.sums.kwh)

    @property
    def total_cost(self) -> Decimal:
        return (self.electricity_cost + self.sums.cloud_spent).quantize(MONEY)

    @property
    def cost_per_hero(self) -> Decimal | None:
        return (self.total_cost / self.heroes).quantize(MONEY) if self.heroes else None

    @property
    def images_per_hero(self) -> float | None:
        return self.sums.images / self.heroes if self.heroes else None

    @property
    def cloud_equivalent_per_hero(self) -> Decimal | None:
        equivalent = self.pricing.cloud_equivalent(self.sums.local_images)
        if equivalent is None or not self.heroes:
            return None
        return (equivalent / self.heroes).quantize(MONEY)


@dataclass
class CostReport:
    since: date
    weeks: list[date]
    rows: list[CostRow]
    totals: Sums
    presets: list[PresetRow]
    heroes: HeroCosts
    pricing: Pricing
    by_week: dict[date, Sums] = field(default_factory=dict)
    energy_by_week_model: dict[tuple[date, str], float] = field(default_factory=dict)

    @property
    def electricity_cost(self) -> Decimal:
        return self.pricing.electricity(self.totals.kwh)

    @property
    def cloud_equivalent(self) -> Decimal | None:
        return self.pricing.cloud_equivalent(self.totals.local_images)

    @property
    def cloud_spent(self) -> Decimal:
        return self.totals.cloud_spent.quantize(MONEY)

    @property
    def models(self) -> list[str]:
        return sorted({row.model for row in self.rows})


# What a group of succeeded runs made and used. Images are the runs' ``count``: a succeeded run
# made exactly that many candidates, and summing it never touches the candidates table.
RUN_SUMS: dict[str, Any] = {
    "runs": Count("pk"),
    "images": Sum("count"),
    "cloud_images": Sum("count", filter=Q(cloud_cost__isnull=False)),
    "gpu": Sum("gpu_seconds"),
    "energy": Sum("energy_joules"),
    "estimated": Count("pk", filter=Q(energy_estimated=True)),
    "cloud": Sum("cloud_cost"),
}


def window_start(weeks: int, today: date | None = None) -> datetime:
    """Monday 00:00 (current time zone) of the first of the last ``weeks`` weeks, this one included."""
    today = today or timezone.localdate()
    monday = today - timedelta(days=today.weekday()) - timedelta(weeks=weeks - 1)
    return timezone.make_aware(datetime.combine(monday, time.min))


def _model(prefix: str = "") -> Coalesce:
    """The model that really ran: the worker's profile (a stand-in, say), else the one asked for."""
    return Coalesce(NullIf(f"{prefix}engine_profile", Value("")), f"{prefix}model_profile", output_field=CharField())


def _week(prefix: str = "") -> Trunc:
    return Trunc(f"{prefix}finished_at", "week", output_field=DateField())


def cost_report(*, weeks: int = DEFAULT_WEEKS, pricing: Pricing | None = None) -> CostReport:
    """The last ``weeks`` weeks of succeeded runs, summed per week, model and preset."""
    pricing = pricing or Pricing.from_settings()
    start = window_start(weeks)
    done = Q(status=GenerationRun.Status.SUCCEEDED, finished_at__gte=start)
    run_groups = (
        GenerationRun.objects.filter(done)
        .annotate(week=_week(), model=_model())
        .values("week", "model", "preset__name")
        .annotate(
            **RUN_SUMS,
        )
        .order_by()
    )
    review_groups = (
        Candidate.objects.filter(run__status=GenerationRun.Status.SUCCEEDED, run__finished_at__gte=start)
        .values("run__preset__name")
        .annotate(
            images=Count("pk"),
            kept=Count("pk", filter=Q(review_status__in=KEPT)),
            rejected=Count("pk", filter=Q(review_status=Candidate.Review.REJECTED)),
            pending=Count("pk", filter=Q(review_status=Candidate.Review.PENDING)),
        )
        .order_by()
    )
    cells: dict[tuple[date, str], Sums] = defaultdict(Sums)
    presets: dict[str, PresetRow] = {}
    for group in run_groups:
        week = _as_date(group["week"])
        sums = _sums(group)
        cells[(week, group["model"])].add(sums)
        name = group["preset__name"] or NO_PRESET
        preset = presets.setdefault(name, PresetRow(name))
        preset.gpu_seconds += sums.gpu_seconds
        preset.energy_joules += sums.energy_joules
    for counted in review_groups:
        name = counted["run__preset__name"] or NO_PRESET
        preset = presets.setdefault(name, PresetRow(name))
        preset.images += counted["images"]
        preset.kept += counted["kept"]
        preset.rejected += counted["rejected"]
        preset.pending += counted["pending"]
    totals, by_week = Sums(), {start.date() + timedelta(weeks=i): Sums() for i in range(weeks)}
    for (week, _model_name), sums in cells.items():
        totals.add(sums)
        by_week.setdefault(week, Sums()).add(sums)
    rows = [
        CostRow(week=week, model=model, sums=sums, pricing=pricing)
        for (week, model), sums in sorted(cells.items(), key=lambda item: (-item[0][0].toordinal(), item[0][1]))
    ]
    return CostReport(
        since=start.date(),
        weeks=sorted(by_week),
        rows=rows,
        totals=totals,
        presets=sorted(presets.values(), key=lambda row: (-row.images, row.preset)),
        heroes=hero_costs(since=start, pricing=pricing),
        pricing=pricing,
        by_week=by_week,
        energy_by_week_model={key: sums.energy_joules for key, sums in cells.items()},
    )


def hero_costs(*, since: datetime, pricing: Pricing) -> HeroCosts:
    """Heroes published since ``since`` (still published), and every run of their articles."""
    articles = (
        Publication.objects.filter(status=Publication.Status.PUBLISHED, finished_at__gte=since)
        .values("article_id")
        .distinct()
    )
    heroes = articles.count()
    runs = GenerationRun.objects.filter(article__in=articles, status=GenerationRun.Status.SUCCEEDED).aggregate(
        **RUN_SUMS
    )
    return HeroCosts(heroes=heroes, sums=_sums(runs), pricing=pricing)


def _sums(group: Any) -> Sums:
    return Sums(
        runs=group["runs"],
        images=group["images"] or 0,
        cloud_images=group["cloud_images"] or 0,
        gpu_seconds=group["gpu"] or 0.0,
        energy_joules=group["energy"] or 0.0,
        estimated_runs=group["estimated"],
        cloud_spent=group["cloud"] or Decimal(0),
    )


def _as_date(value: Any) -> date:
    """A truncated week as a date (SQLite may hand back a string or a datetime)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


CSV_HEADER = [
    "week",
    "model",
    "runs",
    "images",
    "cloud_images",
    "gpu_seconds",
    "energy_kwh",
    "estimated_runs",
    "electricity_cost",
    "cloud_equivalent",
    "cloud_spent",
    "currency",
]


def csv_rows(report: CostReport) -> list[list[str]]:
    """The table as CSV rows (header first): one per week and model, newest week first."""
    out = [CSV_HEADER]
    for row in report.rows:
        equivalent = row.cloud_equivalent
        out.append(
            [
                row.week.isoformat(),
                row.model,
                str(row.sums.runs),
                str(row.sums.images),
                str(row.sums.cloud_images),
                f"{row.sums.gpu_seconds:.1f}",
                str(row.sums.kwh),
                str(row.sums.estimated_runs),
                str(row.electricity_cost),
                "" if equivalent is None else str(equivalent),
                str(row.cloud_spent),
                report.pricing.currency,
            ]
        )
    return out
