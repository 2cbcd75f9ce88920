"""The Costs page's charts, laid out on the server as plain SVG shapes (no JavaScript, no CDN).

Each chart is a list of rectangles and labels in a fixed coordinate box; the template draws
them inside an ``<svg viewBox>``, so a chart scales with the page and reads with no script.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date

from gallery.costs import CostReport

# The dark theme's palette (slate, indigo, rose, and a few to tell models apart).
LOCAL = "#818cf8"  # indigo: local electricity
CLOUD_EQUIVALENT = "#fb7185"  # rose: the same images in the cloud
CLOUD_SPENT = "#fbbf24"  # amber: what the cloud engine really spent
SERIES = ["#818cf8", "#2dd4bf", "#fb7185", "#fbbf24", "#38bdf8", "#a78bfa", "#94a3b8"]

# A small box (scaled up on a wide screen, down on a phone), so its text stays readable on both.
WIDTH, HEIGHT = 480, 240
LEFT, RIGHT, TOP, BOTTOM = 60, 22, 12, 36


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass
class Chart:
    key: str
    title: str
    description: str
    width: int = WIDTH
    height: int = HEIGHT
    rects: list[Rect] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    gridlines: list[float] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    empty: bool = False


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^n at or above ``value`` (a readable top for the axis)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value * (1 - 1e-9):
            return step * power
    return 10 * power


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _week_label(week: date) -> str:
    return f"{week:%b} {week.day}"


def _vertical(
    chart: Chart, weeks: list[date], stacks: list[list[list[tuple[float, str, str]]]], unit: str, top: float
) -> Chart:
    """Bars per week: ``stacks[week][bar]`` is a list of (value, fill, title) drawn bottom up;
    several bars in a week stand side by side."""
    plot_w, plot_h = chart.width - LEFT - RIGHT, chart.height - TOP - BOTTOM
    top = nice_ceiling(top)
    for i in range(3):
        value = top * i / 2
        y = TOP + plot_h - plot_h * value / top
        chart.gridlines.append(y)
        chart.labels.append(Label(LEFT - 6, y + 4, f"{_number(value)} {unit}".strip(), "end"))
    group = plot_w / max(len(weeks), 1)
    every = 1 if len(weeks) <= 8 else 2
    for index, (week, bars) in enumerate(zip(weeks, stacks, strict=True)):
        x0 = LEFT + index * group
        bar_w = group * 0.78 / max(len(bars), 1)
        for b, segments in enumerate(bars):
            x = x0 + group * 0.11 + b * bar_w
            base: float = TOP + plot_h
            for value, fill, title in segments:
                if value <= 0:
                    continue
                height = plot_h * value / top
                base -= height
                chart.rects.append(
                    Rect(round(x, 1), round(base, 1), round(bar_w - 1, 1), round(height, 1), fill, title)
                )
        if (len(weeks) - 1 - index) % every == 0:
            chart.labels.append(Label(round(x0 + group / 2, 1), chart.height - BOTTOM + 18, _week_label(week)))
    return chart


def cost_chart(report: CostReport) -> Chart:
    """Per week: local electricity beside the same images at the cloud price, and real cloud spend."""
    pricing = report.pricing
    chart = Chart(
        key="cost",
        title=f"Cost per week ({pricing.currency})",
        description=(
            f"Bars per week: local electricity, the same images at {pricing.cloud_model}'s price, "
            "and what the cloud engine spent."
        ),
        legend=[
            (LOCAL, "Local electricity"),
            (CLOUD_EQUIVALENT, f"Same images in the cloud ({pricing.cloud_model})"),
            (CLOUD_SPENT, "Cloud engine spent"),
        ],
    )
    stacks = []
    highest = 0.0
    for week in report.weeks:
        sums = report.by_week[week]
        local = float(pricing.electricity(sums.kwh))
        equivalent = float(pricing.cloud_equivalent(sums.local_images) or 0)
        spent = float(sums.cloud_spent)
        highest = max(highest, local, equivalent, spent)
        label = _week_label(week)
        stacks.append(
            [
                [(local, LOCAL, f"{label}: local electricity {local:.4f} {pricing.currency}")],
                [(equivalent, CLOUD_EQUIVALENT, f"{label}: in the cloud {equivalent:.4f} {pricing.currency}")],
                [(spent, CLOUD_SPENT, f"{label}: cloud engine spent {spent:.4f} {pricing.currency}")],
            ]
        )
    chart.empty = highest == 0
    return _vertical(chart, report.weeks, stacks, "", highest)


def energy_chart(report: CostReport) -> Chart:
    """Per week: kWh, one colour per model, stacked."""
    models = sorted({model for (_week, model), joules in report.energy_by_week_model.items() if joules})
    colours = {model: SERIES[i % len(SERIES)] for i, model in enumerate(models)}
    chart = Chart(
        key="energy",
        title="GPU energy per week (kWh)",
        description="Stacked bars per week, one colour per model.",
        legend=[(colours[model], model) for model in models],
    )
    stacks, highest = [], 0.0
    for week in report.weeks:
        segments = []
        for model in models:
            kwh = report.energy_by_week_model.get((week, model), 0.0) / 3_600_000
            segments.append((kwh, colours[model], f"{_week_label(week)}: {model} {kwh:.4f} kWh"))
        highest = max(highest, sum(value for value, _, _ in segments))
        stacks.append([segments])
    chart.empty = highest == 0
    return _vertical(chart, report.weeks, stacks, "", highest)  # the title says kWh: the ticks fit


def approval_chart(report: CostReport) -> Chart:
    """Per preset: the share of decided images that were kept, longest bar = best."""
    rows = [row for row in report.presets if row.decided]
    label_w, bar_w, row_h = 150, 226, 34
    chart = Chart(
        key="approval",
        title="Approval rate per preset",
        description="Kept (approved or published) out of the decided images, per preset.",
        height=max(row_h * len(rows) + 16, 70),
        legend=[(LOCAL, "Kept"), ("#334155", "Rejected")],
    )
    chart.empty = not rows
    for index, row in enumerate(rows):
        y = 8 + index * row_h
        rate = row.approval_rate or 0.0
        chart.labels.append(Label(label_w - 8, y + 21, row.preset[:18], "end"))
        chart.rects.append(Rect(label_w, y + 4, bar_w, row_h - 10, "#334155", f"{row.preset}: {row.rejected} rejected"))
        if rate > 0:
            chart.rects.append(
                Rect(label_w, y + 4, round(bar_w * rate, 1), row_h - 10, LOCAL, f"{row.preset}: {row.kept} kept")
            )
        chart.labels.append(
            Label(label_w + bar_w + 8, y + 21, f"{rate:.0%} of {row.decided}", "start"),
        )
    return chart


def charts(report: CostReport) -> list[Chart]:
    return [cost_chart(report), energy_chart(report), approval_chart(report)]
