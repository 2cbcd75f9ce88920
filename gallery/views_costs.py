"""The Costs page and its CSV: what the images of the last weeks cost, local against cloud."""

from __future__ import annotations

import csv

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.views.decorators.http import require_GET

from gallery.access import editor_required
from gallery.costs import DEFAULT_WEEKS, MAX_WEEKS, cost_report, csv_rows
from gallery.costs_charts import charts


def _weeks(request: HttpRequest) -> int | None:
    """``?weeks=N`` (1 to MAX_WEEKS), the default when absent; None when it is not such a number."""
    raw = request.GET.get("weeks", "").strip()
    if not raw:
        return DEFAULT_WEEKS
    return int(raw) if raw.isdigit() and 1 <= int(raw) <= MAX_WEEKS else None


def _bad_weeks() -> HttpResponse:
    return HttpResponseBadRequest(
        f"weeks: give a whole number of weeks from 1 to {MAX_WEEKS}.", content_type="text/plain"
    )


@editor_required
@require_GET
def costs(request: HttpRequest) -> HttpResponse:
    weeks = _weeks(request)
    if weeks is None:
        return _bad_weeks()
    report = cost_report(weeks=weeks)
    context = {"report": report, "charts": charts(report), "weeks": weeks, "week_choices": (4, 12, 26, 52)}
    return render(request, "gallery/costs.html", context)


@editor_required
@require_GET
def costs_csv(request: HttpRequest) -> HttpResponse:
    weeks = _weeks(request)
    if weeks is None:
        return _bad_weeks()
    report = cost_report(weeks=weeks)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="hoffdesk-costs-{report.since.isoformat()}.csv"'
    csv.writer(response).writerows(csv_rows(report))
    return response
