"""Console analytics pages: funnel, retention, repurchase curve, RFM grid, CLV distribution and channel ROI.

Each page reads the DuckDB projection through :mod:`siyu.analytics.service` (or, for the two figures
the service lacks, a read-only query here), draws an ECharts chart from JSON embedded in the page
(``static/analytics.js``) and offers the same figures as a CSV download (UTF-8 with a BOM). Like the
analytics API, the pages are for owners and admins only: the projection holds the whole organization.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import numpy as np
from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlalchemy import func, select

from siyu.accounts.models import Account
from siyu.analytics import service
from siyu.analytics import tasks as analytics_tasks
from siyu.analytics.clv import CLVInputError
from siyu.analytics.engines import AnalyticsEngine
from siyu.analytics.funnels import FunnelMode
from siyu.analytics.models import CostDimension
from siyu.analytics.rfm import SEGMENTS, RFMReport, fm_score, rfm_sql, segment_of
from siyu.analytics.roi import ROIDimension
from siyu.analytics.schemas import ChannelCostIn, FunnelIn, RetentionIn, StepIn
from siyu.channels import service as channels
from siyu.customers.models import Customer
from siyu.kit.clock import utcnow
from siyu.kit.csvexport import csv_attachment
from siyu.kit.errors import DomainError, Forbidden
from siyu.tenancy.deps import DbSession
from siyu.tenancy.models import User
from siyu.web.auth import Console, ConsoleRoute
from siyu.web.i18n import N_
from siyu.web.templating import PageContext, render

router = APIRouter(prefix="/analytics", include_in_schema=False, route_class=ConsoleRoute)

BREAKDOWNS = ("source", "channel", "stage", "account_id", "operator_id")
FUNNEL_MAX_STEPS = 5
FUNNEL_PREFERRED = ("customer_added", "message_received", "link_clicked", "order_paid")
PERIODS = ("day", "week", "month")
REPURCHASE_HORIZONS = (30, 60, 90, 180, 365)
ROI_DIMENSIONS = tuple(d.value for d in ROIDimension)
MAX_CHART_SERIES = 8  # more breakdown lines or bars than this are unreadable


def _org(ctx: PageContext) -> int:
    """The organization of an owner or admin; operators are refused, as by the analytics API."""
    assert ctx.principal is not None  # Console only yields logged-in contexts
    if not ctx.principal.can_administer:
        raise Forbidden("analytics are for owners and admins", field="role")
    return ctx.principal.org_id


def _offset_minutes(ctx: PageContext) -> int:
    """The console time zone's current UTC offset (480 for Asia/Shanghai)."""
    offset = utcnow().astimezone(ZoneInfo(ctx.timezone)).utcoffset() or timedelta(0)
    return int(offset.total_seconds() // 60)


def _local_today(ctx: PageContext) -> date:
    return utcnow().astimezone(ZoneInfo(ctx.timezone)).date()


# Console CSV columns in the reader's language (the API's CSV keeps these machine names); columns in fen
# are written in yuan with two decimals, their heading says so.
CSV_COLUMNS = {
    "breakdown_value": N_("Breakdown"),
    "step": N_("Step"),
    "event_type": N_("Event"),
    "count": N_("Count"),
    "conversion_from_start": N_("From first step"),
    "conversion_from_previous": N_("From previous step"),
    "median_seconds_from_previous": N_("Median seconds from the previous step"),
    "cohort_start": N_("Cohort"),
    "size": N_("Cohort size"),
    "group": N_("Group"),
    "day": N_("Day"),
    "buyers_observable": N_("Buyers observable"),
    "bought_again": N_("Bought again"),
    "share": N_("Share"),
    "r_score": N_("Recency score"),
    "f_score": N_("Frequency score"),
    "buyers": N_("Buyers"),
    "monetary_total_fen": N_("Total net spend (yuan)"),
    "monetary_mean_fen": N_("Mean net spend (yuan)"),
    "lower_fen": N_("CLV from (yuan)"),
    "upper_fen": N_("CLV to (yuan)"),
    "customers": N_("Customers"),
    "channel": N_("Channel"),
    "cost_fen": N_("Cost (yuan)"),
    "cost_per_customer_fen": N_("Cost per customer (yuan)"),
    "revenue_fen": N_("Revenue to date (yuan)"),
    "predicted_clv_fen": N_("Predicted CLV (yuan)"),
    "roi": N_("ROI"),
    "predicted_roi": N_("ROI with CLV"),
    "name": N_("Name"),
}


def _csv_heading(ctx: PageContext, column: str) -> str:
    if column.startswith("period_") and column[7:].isdigit():
        return ctx.gettext("Period %(n)s") % {"n": column[7:]}
    return ctx.gettext(CSV_COLUMNS[column]) if column in CSV_COLUMNS else column


def csv_download(
    ctx: PageContext, header: Sequence[str], rows: Iterable[Sequence[Any]], filename: str
) -> Response:
    """``csv_attachment`` (formula cells neutralised) with headings in the reader's language and amounts
    in yuan."""
    in_fen = [column.endswith("_fen") for column in header]
    return csv_attachment(
        [_csv_heading(ctx, column) for column in header],
        (
            [
                "" if v is None else f"{v / 100:.2f}" if fen and isinstance(v, int | float) else v
                for v, fen in zip(row, in_fen, strict=False)
            ]
            for row in rows
        ),
        filename,
    )


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg', '')}" if where else str(first.get("msg", ""))
    if isinstance(exc, DomainError):
        return exc.message
    return str(exc)


def _group_labeler(db: DbSession, ctx: PageContext, org_id: int, by: str | None) -> Any:
    """A function naming a breakdown value in the page's language (account and operator ids become names)."""
    names: dict[Any, str] = {}
    if by == "account_id":
        names = dict(db.execute(select(Account.id, Account.name).where(Account.org_id == org_id)).all())
    elif by == "operator_id":
        names = dict(db.execute(select(User.id, User.name).where(User.org_id == org_id)).all())

    def name(value: Any) -> str:
        if by is None:
            return ctx.gettext("All customers")
        if value is None or value == "":
            return ctx.gettext("Unknown")
        if by in ("source", "channel"):
            return ctx.label("source", value)
        if by == "stage":
            return ctx.label("stage", value)
        return names.get(value, str(value))

    return name


def _roi_labeler(db: DbSession, ctx: PageContext, org_id: int, dim: str) -> Any:
    """A function naming an ROI row: code states by their code's name, account ids by the account's name."""
    if dim == "code":
        names = {c.state: c.name for c in channels.list_codes(db, org_id)}
    elif dim == "account":
        names = {
            str(k): v for k, v in db.execute(select(Account.id, Account.name).where(Account.org_id == org_id))
        }
    else:
        return _group_labeler(db, ctx, org_id, dim)

    def name(value: str | None) -> str:
        # A state that is no code of siyu's (the demo's, another tool's) is usually a source code.
        return ctx.gettext("Unknown") if value is None else names.get(value) or ctx.label("source", value)

    return name


def _breakdown(value: str) -> str | None:
    return value if value in BREAKDOWNS else None


def _base(ctx: PageContext, section: str) -> dict[str, Any]:
    export = f"/analytics/{section}.csv"
    if ctx.request.url.query:
        export += "?" + ctx.request.url.query
    names = {
        "source": ctx.gettext("Source"),
        "channel": ctx.gettext("Channel code"),
        "stage": ctx.gettext("Stage"),
        "account_id": ctx.gettext("Account"),
        "operator_id": ctx.gettext("Operator"),
    }
    return {
        "active": "analytics",
        "section": section,
        "export_url": export,
        "breakdowns": BREAKDOWNS,
        "dimension_names": names,
    }


def format_duration(ctx: PageContext, seconds: float | None) -> str:
    """A duration in the largest fitting unit: 45 s, 12 min, 3.5 h, 2.1 d."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return ctx.gettext("%(n)s s") % {"n": round(seconds)}
    if seconds < 3600:
        return ctx.gettext("%(n)s min") % {"n": round(seconds / 60)}
    if seconds < 86_400:
        return ctx.gettext("%(n)s h") % {"n": f"{seconds / 3600:.1f}"}
    return ctx.gettext("%(n)s d") % {"n": f"{seconds / 86_400:.1f}"}


# -- funnel ---------------------------------------------------------------------------------------


def _funnel(
    db: DbSession, ctx: PageContext, step: list[str], window_days: int, mode: list[str], breakdown: str
) -> tuple[dict[str, Any], list[Any]]:
    """Run the funnel the form asks for; returns the template data and the raw results."""
    org = _org(ctx)
    proj = service.projection_of_app(ctx.request.app.state)
    with proj.locked() as eng:
        types = [t for t, _ in proj.event_types(org, refresh=False)]
        chosen = [s for s in step if s][:FUNNEL_MAX_STEPS]
        if not step:  # first visit: a sensible default from what the brand records
            chosen = [t for t in FUNNEL_PREFERRED if t in types] or types[:3]
        by = _breakdown(breakdown)
        form = {
            "steps": chosen,
            "window_days": window_days,
            "modes": [m for m in mode if m in FunnelMode.__members__],
            "breakdown": by or "",
        }
        data: dict[str, Any] = {
            "form": form,
            "event_types": types,
            "modes_all": list(FunnelMode.__members__),
            "results": [],
            "error": None,
        }
        if len(chosen) < 2:
            data["error"] = ctx.gettext("Choose at least two steps.") if types else None
            return data, []
        if not 1 <= window_days <= 366:
            data["error"] = ctx.gettext("The window must be 1 to 366 days.")
            return data, []
        try:
            body = FunnelIn(
                steps=[StepIn(event_type=s) for s in chosen],
                modes=form["modes"],
                window_seconds=window_days * 86_400,
                breakdown=by,
            )
            results = service.funnel(eng, org, body, memo=proj)
        except (ValidationError, DomainError) as exc:
            data["error"] = _error_text(exc)
            return data, []
    name = _group_labeler(db, ctx, org, by)
    results = sorted(results, key=lambda r: -(r.steps[0].count if r.steps else 0))
    data["results"] = [
        {
            "name": name(r.breakdown_value),
            "steps": r.steps,
            "durations": [format_duration(ctx, s.median_seconds_from_previous) for s in r.steps],
        }
        for r in results
    ]
    data["chart"] = {
        "kind": "funnel",
        "steps": [ctx.label("event", s) for s in chosen],
        "series": [
            {
                "name": name(r.breakdown_value),
                "counts": [s.count for s in r.steps],
                "conv": [s.conversion_from_start for s in r.steps],
                "prev": [s.conversion_from_previous for s in r.steps],
                "median": [format_duration(ctx, s.median_seconds_from_previous) for s in r.steps],
            }
            for r in results[:MAX_CHART_SERIES]
        ],
        "labels": {
            "count": ctx.gettext("Customers"),
            "conversion": ctx.gettext("Conversion from first step"),
            "previous": ctx.gettext("From previous step"),
            "median": ctx.gettext("Median time from previous"),
        },
        "empty": ctx.gettext("No customer reached the first step."),
    }
    return data, results


@router.get("")
def analytics_home(ctx: Console) -> Response:
    """The analytics section opens on the funnel."""
    _org(ctx)
    return RedirectResponse("/analytics/funnel", status_code=303)


@router.get("/funnel")
def funnel_page(
    db: DbSession,
    ctx: Console,
    step: Annotated[list[str], Query()] = [],  # noqa: B006
    window_days: int = 14,
    mode: Annotated[list[str] | None, Query()] = None,
    breakdown: str = "",
) -> Response:
    """Funnel bars with step-to-step conversion and median time between steps."""
    if mode is None:
        mode = []
    data, _ = _funnel(db, ctx, step, window_days, mode, breakdown)
    return render(ctx, "analytics/funnel.html", **_base(ctx, "funnel"), **data)


@router.get("/funnel.csv")
def funnel_csv(
    db: DbSession,
    ctx: Console,
    step: Annotated[list[str], Query()] = [],  # noqa: B006
    window_days: int = 14,
    mode: Annotated[list[str] | None, Query()] = None,
    breakdown: str = "",
) -> Response:
    """The funnel as CSV."""
    if mode is None:
        mode = []
    _, results = _funnel(db, ctx, step, window_days, mode, breakdown)
    header = [
        "breakdown_value",
        "step",
        "event_type",
        "count",
        "conversion_from_start",
        "conversion_from_previous",
        "median_seconds_from_previous",
    ]
    rows = (
        [
            r.breakdown_value,
            s.step,
            ctx.label("event", s.event_type),
            s.count,
            s.conversion_from_start,
            s.conversion_from_previous,
            s.median_seconds_from_previous,
        ]
        for r in results
        for s in r.steps
    )
    return csv_download(ctx, header, rows, "funnel.csv")


# -- retention ------------------------------------------------------------------------------------


def _retention(
    ctx: PageContext, start: str, returning: str, period: str, periods: int, mode: str
) -> tuple[dict[str, Any], list[Any]]:
    org = _org(ctx)
    proj = service.projection_of_app(ctx.request.app.state)
    with proj.locked() as eng:
        types = [t for t, _ in proj.event_types(org, refresh=False)]
        start = start or next(
            (t for t in ("customer_added", "order_paid") if t in types), types[0] if types else ""
        )
        returning = returning or next(
            (t for t in ("order_paid", "message_received") if t in types), types[0] if types else ""
        )
        period = period if period in PERIODS else "week"
        form = {
            "start": start,
            "returning": returning,
            "period": period,
            "periods": periods,
            "mode": "on_or_after" if mode == "on_or_after" else "on",
        }
        data: dict[str, Any] = {
            "form": form,
            "event_types": types,
            "periods_all": PERIODS,
            "cohorts": [],
            "error": None,
        }
        if not start or not returning:
            return data, []
        if not 1 <= periods <= 52:
            data["error"] = ctx.gettext("Show 1 to 52 periods.")
            return data, []
        try:
            body = RetentionIn(
                start=StepIn(event_type=start),
                returning=StepIn(event_type=returning),
                period=period,
                periods=periods,
                on_or_after=form["mode"] == "on_or_after",
                utc_offset_minutes=_offset_minutes(ctx),
            )
            cohorts = service.retention(eng, org, body, memo=proj)
        except (ValidationError, DomainError) as exc:
            data["error"] = _error_text(exc)
            return data, []
    today = _local_today(ctx)
    rows: list[dict[str, Any]] = []
    for c in cohorts:
        if c.size <= 0:
            continue
        # Periods that have not started yet have no returns to count: blank, not 0%.
        elapsed = [period_start_after(c.cohort_start, period, n) <= today for n in range(periods + 1)]
        rows.append(
            {
                "start": c.cohort_start,
                "size": c.size,
                "retained": [k if ok else None for k, ok in zip(c.retained, elapsed, strict=True)],
                "rates": [r if ok else None for r, ok in zip(c.rates, elapsed, strict=True)],
            }
        )
    data["cohorts"] = rows
    data["max_rate"] = max((r for c in rows for r in c["rates"] if r is not None), default=0.0) or 1.0
    data["chart"] = {
        "kind": "retention",
        "cohorts": [f"{c['start'].isoformat()} ({c['size']})" for c in rows],
        "periods": [str(i) for i in range(periods + 1)],
        "cells": [
            [p, i, round(rate * 100, 1), c["retained"][p]]
            for i, c in enumerate(rows)
            for p, rate in enumerate(c["rates"])
            if rate is not None
        ],
        "labels": {
            "period": ctx.gettext("Period"),
            "rate": ctx.gettext("Retained"),
            "customers": ctx.gettext("Customers"),
        },
        "empty": ctx.gettext("No cohort in this range."),
    }
    return data, rows


def period_start_after(start: date, period: str, n: int) -> date:
    """The first day of the n-th period after the one starting on ``start`` (day, week or calendar month)."""
    if period == "day":
        return start + timedelta(days=n)
    if period == "week":
        return start + timedelta(weeks=n)
    months = start.year * 12 + start.month - 1 + n
    return date(months // 12, months % 12 + 1, 1)


@router.get("/retention")
def retention_page(
    ctx: Console,
    start: str = "",
    returning: str = "",
    period: str = "week",
    periods: int = 8,
    mode: str = "on",
) -> Response:
    """The cohort retention heat table."""
    data, _ = _retention(ctx, start, returning, period, periods, mode)
    return render(ctx, "analytics/retention.html", **_base(ctx, "retention"), **data)


@router.get("/retention.csv")
def retention_csv(
    ctx: Console,
    start: str = "",
    returning: str = "",
    period: str = "week",
    periods: int = 8,
    mode: str = "on",
) -> Response:
    """The retention table as CSV (counts; rates are count / size)."""
    _, rows = _retention(ctx, start, returning, period, periods, mode)
    header = ["cohort_start", "size", *(f"period_{i}" for i in range(periods + 1))]
    return csv_download(
        ctx, header, ([c["start"].isoformat(), c["size"], *c["retained"]] for c in rows), "retention.csv"
    )


# -- repurchase curve -----------------------------------------------------------------------------


def repurchase_curve(
    engine: AnalyticsEngine, org_id: int, *, by: str | None, max_days: int, as_of: datetime
) -> dict[Any, list[tuple[int, int, int]]]:
    """Per group, for each day N in 0..max_days: (N, first-time buyers observable for N days, of them bought again).

    A buyer counts toward day N only when their first order is at least N days before ``as_of``, so
    recent buyers do not drag the curve down (right-censoring). "Again" is a second paid order at most
    N days after the first; the group is the buyer's first-touch dimension (``None`` without breakdown).
    """
    if by is not None and by not in BREAKDOWNS:
        raise ValueError(f"breakdown {by!r} is not one of {BREAKDOWNS}")
    org = int(org_id)
    end = as_of.astimezone(ZoneInfo("UTC")).replace(tzinfo=None).isoformat(" ")
    group = f"c.{by}" if by else "NULL"
    top = int(max_days) + 1  # every age or gap beyond the horizon counts alike
    # Per group, three histograms in whole days, summed by the engine (a few hundred rows, not one per
    # buyer): buyers by age, repeat buyers by age, repeat buyers by gap to the second order.
    rows = engine.query(
        "WITH o AS (SELECT customer_id, paid_at, row_number() OVER (PARTITION BY customer_id "
        f"ORDER BY paid_at, order_id) AS rn FROM orders WHERE org_id = {org} AND paid_at <= TIMESTAMP '{end}'), "
        "f AS (SELECT customer_id, min(paid_at) FILTER (WHERE rn = 1) AS first_at, "
        "min(paid_at) FILTER (WHERE rn = 2) AS second_at FROM o GROUP BY customer_id), "
        f"b AS (SELECT {group} AS g, date_diff('second', f.first_at, TIMESTAMP '{end}') / 86400.0 AS age, "
        "date_diff('second', f.first_at, f.second_at) / 86400.0 AS gap FROM f "
        f"LEFT JOIN customers AS c ON c.org_id = {org} AND c.customer_id = f.customer_id) "
        f"SELECT g, 0 AS k, CAST(least(floor(age), {top}) AS BIGINT) AS d, count(*) AS n FROM b GROUP BY g, d "
        f"UNION ALL SELECT g, 1 AS k, CAST(least(floor(age), {top}) AS BIGINT) AS d, count(*) AS n FROM b "
        "WHERE gap IS NOT NULL GROUP BY g, d "
        f"UNION ALL SELECT g, 2 AS k, CAST(least(ceil(gap), {top}) AS BIGINT) AS d, count(*) AS n FROM b "
        "WHERE gap IS NOT NULL GROUP BY g, d"
    )
    hist: dict[Any, np.ndarray] = {}
    for g, k, d, n in rows:
        hist.setdefault(g, np.zeros((3, top + 1), dtype=np.int64))[int(k), int(d)] += int(n)
    days = np.arange(max_days + 1)
    out: dict[Any, list[tuple[int, int, int]]] = {}
    for g, h in hist.items():
        # Observable on day N: age >= N. Again by day N: gap <= N <= age; a gap never exceeds the age,
        # so that is (gap <= N) minus (repeat buyers younger than N days).
        observable = h[0][::-1].cumsum()[::-1][: max_days + 1]
        gap_within = h[2].cumsum()[: max_days + 1]
        younger = np.concatenate(([0], h[1].cumsum()[:max_days]))
        again = gap_within - younger
        out[g] = list(zip(days.tolist(), observable.tolist(), again.tolist(), strict=True))
    return out


def _sum_curves(curves: list[list[tuple[int, int, int]]]) -> list[tuple[int, int, int]]:
    """Curves of disjoint groups added day by day."""
    total = np.sum([np.asarray(c, dtype=np.int64)[:, 1:] for c in curves], axis=0)
    return [(day, int(n), int(k)) for day, (n, k) in enumerate(total.tolist())]


def _repurchase(db: DbSession, ctx: PageContext, by: str, days: int) -> tuple[dict[str, Any], list[Any]]:
    org = _org(ctx)
    group = _breakdown(by) if by else None
    days = days if days in REPURCHASE_HORIZONS else 90
    proj = service.projection_of_app(ctx.request.app.state)
    now = utcnow()
    with proj.locked() as eng:
        groups = repurchase_curve(eng, org, by=group, max_days=days, as_of=now) if group else {}
        # The overall curve is the groups' sum: one pass over the orders, not two.
        overall = (
            _sum_curves(list(groups.values()))
            if groups
            else repurchase_curve(eng, org, by=None, max_days=days, as_of=now).get(None, [])
        )
    name = _group_labeler(db, ctx, org, group)
    ranked = sorted(groups.items(), key=lambda kv: -kv[1][0][1])
    series = [(ctx.gettext("All buyers"), None, overall)] + [(name(g), g, pts) for g, pts in ranked]
    # With a breakdown the CSV holds one curve per group, else the overall one.
    curves = [(g, pts) for _, g, pts in series[1:]] if group else [(None, overall)]
    csv_rows = [[g, d, n, k, round(k / n, 4) if n else None] for g, pts in curves for d, n, k in pts]
    summary = [
        {
            "name": label,
            "buyers": pts[0][1] if pts else 0,
            "at": {
                h: (pts[h][2] / pts[h][1] if pts and pts[h][1] else None)
                for h in (7, 30, 60, 90)
                if h <= days
            },
        }
        for label, _, pts in series
    ]
    data = {
        "form": {"by": group or "", "days": days},
        "horizons": REPURCHASE_HORIZONS,
        "summary": summary,
        "marks": [h for h in (7, 30, 60, 90) if h <= days],
        "chart": {
            "kind": "repurchase",
            "days": list(range(days + 1)),
            "series": [
                {"name": label, "data": [round(k / n * 100, 2) if n else None for _, n, k in pts]}
                for label, _, pts in series[: MAX_CHART_SERIES + 1]
                if pts
            ],
            "labels": {
                "day": ctx.gettext("Days after the first order"),
                "share": ctx.gettext("Bought again"),
            },
            "empty": ctx.gettext("No buyers yet."),
        },
    }
    return data, csv_rows


@router.get("/repurchase")
def repurchase_page(db: DbSession, ctx: Console, by: str = "source", days: int = 90) -> Response:
    """The repurchase curve: share of first-time buyers who bought again within N days, by channel."""
    data, _ = _repurchase(db, ctx, by, days)
    return render(ctx, "analytics/repurchase.html", **_base(ctx, "repurchase"), **data)


@router.get("/repurchase.csv")
def repurchase_csv(db: DbSession, ctx: Console, by: str = "source", days: int = 90) -> Response:
    """The repurchase curve as CSV: one row per group and day."""
    _, rows = _repurchase(db, ctx, by, days)
    return csv_download(
        ctx, ["group", "day", "buyers_observable", "bought_again", "share"], rows, "repurchase.csv"
    )


# -- RFM ------------------------------------------------------------------------------------------


def rfm_grids(
    engine: AnalyticsEngine, org_id: int, as_of: datetime, *, buyers: str | None = None
) -> tuple[RFMReport, list[tuple[int, int, int, int, int]]]:
    """The RFM report (as ``rfm_report``) and the buyers per (R score, F score) cell with their total and
    mean net monetary value in fen (the mean rounded half away from zero, as SQL ``round``).

    Both come from one pass over the buyers, counted per (R, F, M) scores: each of the two used to score
    every buyer again. ``buyers`` as ``rfm_sql`` takes it.
    """
    rows = engine.query(
        f"WITH x AS ({rfm_sql(org_id, as_of, buyers=buyers)}) SELECT r_score, f_score, m_score, count(*), sum(m) "
        "FROM x GROUP BY ALL"
    )
    grid = [[0] * 5 for _ in range(5)]
    segments = dict.fromkeys(SEGMENTS, 0)
    by_cell: dict[tuple[int, int], list[int]] = {}
    for r, f, m, n, total in rows:
        r, f, n = int(r), int(f), int(n)
        fm = fm_score(f, int(m))
        grid[r - 1][fm - 1] += n
        segments[segment_of(r, fm)] += n
        cell = by_cell.setdefault((r, f), [0, 0])
        cell[0] += n
        cell[1] += int(total)
    report = RFMReport(as_of=as_of, buyers=sum(segments.values()), segments=segments, grid=grid)
    cells = [
        (r, f, n, total, int(math.copysign(math.floor(abs(total / n) + 0.5), total)))
        for (r, f), (n, total) in sorted(by_cell.items())
    ]
    return report, cells


def _rfm(ctx: PageContext) -> tuple[dict[str, Any], list[tuple[int, int, int, int, int]]]:
    org = _org(ctx)
    as_of = utcnow()
    proj = service.projection_of_app(ctx.request.app.state)
    with proj.remembering() as eng:
        report, cells = rfm_grids(eng, org, as_of, buyers=proj.buyers_sql(org, as_of))
    segment_names = {
        "champions": ctx.gettext("Champions"),
        "loyal": ctx.gettext("Loyal"),
        "potential_loyalists": ctx.gettext("Potential loyalists"),
        "new_customers": ctx.gettext("New customers"),
        "promising": ctx.gettext("Promising"),
        "need_attention": ctx.gettext("Need attention"),
        "about_to_sleep": ctx.gettext("About to sleep"),
        "at_risk": ctx.gettext("At risk"),
        "cant_lose": ctx.gettext("Can't lose them"),
        "hibernating": ctx.gettext("Hibernating"),
        "lost": ctx.gettext("Lost"),
    }
    data = {
        "buyers": report.buyers,
        "segments": [
            {
                "code": s,
                "name": segment_names[s],
                "buyers": report.segments.get(s, 0),
                "share": report.segments.get(s, 0) / report.buyers if report.buyers else None,
            }
            for s in SEGMENTS
        ],
        "chart": {
            "kind": "rfm",
            "cells": [[f - 1, r - 1, n, mean, total] for r, f, n, total, mean in cells],
            "labels": {
                "r": ctx.gettext("Recency score (5 = most recent)"),
                "f": ctx.gettext("Frequency score (number of orders, 5 = five or more)"),
                "buyers": ctx.gettext("Buyers"),
                "mean": ctx.gettext("Mean net spend"),
                "total": ctx.gettext("Total net spend"),
            },
            "empty": ctx.gettext("No buyers yet."),
        },
    }
    return data, cells


@router.get("/rfm")
def rfm_page(ctx: Console) -> Response:
    """The 5x5 recency-by-frequency grid and the named segments."""
    data, _ = _rfm(ctx)
    return render(ctx, "analytics/rfm.html", **_base(ctx, "rfm"), **data)


@router.get("/rfm.csv")
def rfm_csv(ctx: Console) -> Response:
    """The R x F grid as CSV, one row per non-empty cell."""
    _, cells = _rfm(ctx)
    return csv_download(
        ctx, ["r_score", "f_score", "buyers", "monetary_total_fen", "monetary_mean_fen"], cells, "rfm.csv"
    )


# -- CLV ------------------------------------------------------------------------------------------


def _clv(db: DbSession, ctx: PageContext, bins: int) -> tuple[dict[str, Any], Any]:
    org = _org(ctx)
    bins = bins if 5 <= bins <= service.MAX_BINS else 20
    proj = service.projection_of_app(ctx.request.app.state)
    with proj.locked() as eng:
        dist = service.clv_distribution(eng, org, bins)
    computed_at = db.scalar(select(func.max(Customer.clv_updated_at)).where(Customer.org_id == org))
    data = {
        "dist": dist,
        "computed_at": computed_at,
        "bins": bins,
        "chart": {
            "kind": "clv",
            "bins": [[b.lower_fen, b.upper_fen, b.customers] for b in dist.bins],
            "labels": {"customers": ctx.gettext("Customers"), "clv": ctx.gettext("Predicted CLV")},
            "empty": ctx.gettext("CLV has not been computed yet."),
        },
    }
    return data, dist


@router.get("/clv")
def clv_page(db: DbSession, ctx: Console, bins: int = 20, error: str = "") -> Response:
    """The distribution of predicted customer lifetime value, with P(alive) and when it was computed."""
    data, _ = _clv(db, ctx, bins)
    return render(ctx, "analytics/clv.html", **_base(ctx, "clv"), **data, error=error or None)


@router.get("/clv.csv")
def clv_csv(db: DbSession, ctx: Console, bins: int = 20) -> Response:
    """The CLV histogram as CSV."""
    _, dist = _clv(db, ctx, bins)
    return csv_download(
        ctx,
        ["lower_fen", "upper_fen", "customers"],
        ([b.lower_fen, b.upper_fen, b.customers] for b in dist.bins),
        "clv.csv",
    )


@router.post("/clv/recompute")
def clv_recompute(db: DbSession, ctx: Console) -> Response:
    """Ask the worker to fit the CLV models again (minutes at a million buyers: never on this request)."""
    org = _org(ctx)
    proj = service.projection_of_app(ctx.request.app.state)
    with proj.locked() as eng:
        has_orders = service.has_orders(eng, org)
    if not has_orders:
        data, _ = _clv(db, ctx, 20)
        error = _error_text(
            CLVInputError("this organization has no orders to fit a CLV model on", field="orders")
        )
        return render(ctx, "analytics/clv.html", status_code=422, **_base(ctx, "clv"), **data, error=error)
    analytics_tasks.refit_clv_task(org)
    return RedirectResponse("/analytics/clv?queued=1", status_code=303)


# -- channel ROI ----------------------------------------------------------------------------------


def _dates(ctx: PageContext, db: DbSession, org: int, date_from: str, date_to: str) -> tuple[date, date]:
    """The range asked for; by default from the first customer's arrival to today (local dates)."""
    try:
        end = date.fromisoformat(date_to) if date_to else _local_today(ctx)
        if date_from:
            start = date.fromisoformat(date_from)
        else:
            first = db.scalar(select(func.min(Customer.created_at)).where(Customer.org_id == org))
            start = first.astimezone(ZoneInfo(ctx.timezone)).date() if first else end - timedelta(days=89)
    except ValueError:
        raise ValueError("dates must look like 2026-01-31") from None
    return min(start, end), end


def _roi(
    db: DbSession,
    ctx: PageContext,
    date_from: str,
    date_to: str,
    dimension: str,
    *,
    form_error: str | None = None,
    cost_form: dict[str, str] | None = None,
) -> tuple[dict[str, Any], list[Any]]:
    org = _org(ctx)
    dim = dimension if dimension in ROI_DIMENSIONS else "source"
    error = form_error
    try:
        start, end = _dates(ctx, db, org, date_from, date_to)
    except ValueError:
        error = ctx.gettext("Dates must look like 2026-01-31.")
        start, end = _dates(ctx, db, org, "", "")
    proj = service.projection_of_app(ctx.request.app.state)
    with proj.remembering() as eng:
        rows = service.channel_roi(
            db,
            eng,
            org,
            date_from=start,
            date_to=end,
            dimension=dim,
            utc_offset_minutes=_offset_minutes(ctx),
            buyers=proj.buyers_sql(org),
        )
    costs = service.list_channel_costs(db, org)[:20]
    name = _roi_labeler(db, ctx, org, dim)
    data = {
        "form": {"date_from": start.isoformat(), "date_to": end.isoformat(), "dimension": dim},
        "roi_dimensions": ROI_DIMENSIONS,
        "roi_dimension_names": {
            "source": ctx.gettext("Source"),
            "channel": ctx.gettext("Code state"),
            "code": ctx.gettext("Channel code"),
            "account": ctx.gettext("Account"),
        },
        "rows": [{"name": name(r.channel), "row": r} for r in rows],
        "costs": [{"name": ctx.label("source", c.channel), "cost": c} for c in costs],
        "cost_form": cost_form
        or {
            "channel": "",
            # Costs are recorded by source or by code state; a code breakdown reads the latter.
            "dimension": "channel" if dim in ("channel", "code") else "source",
            "period_start": start.isoformat(),
            "period_end": end.isoformat(),
            "cost_yuan": "",
            "note": "",
        },
        "error": error,
        "chart": {
            "kind": "roi",
            "channels": [name(r.channel) for r in rows],
            "series": [
                {"name": ctx.gettext("Cost"), "data": [r.cost_fen / 100 for r in rows]},
                {"name": ctx.gettext("Revenue to date"), "data": [r.revenue_fen / 100 for r in rows]},
                {"name": ctx.gettext("Predicted CLV"), "data": [r.predicted_clv_fen / 100 for r in rows]},
            ],
            "empty": ctx.gettext("No customers or costs in this range."),
        },
    }
    return data, rows


@router.get("/roi")
def roi_page(
    db: DbSession, ctx: Console, date_from: str = "", date_to: str = "", dimension: str = "source"
) -> Response:
    """Channel ROI: cost, customers, cost per customer, revenue, predicted CLV and ROI, with a form to add costs."""
    data, _ = _roi(db, ctx, date_from, date_to, dimension)
    return render(ctx, "analytics/roi.html", **_base(ctx, "roi"), **data)


@router.get("/roi.csv")
def roi_csv(
    db: DbSession, ctx: Console, date_from: str = "", date_to: str = "", dimension: str = "source"
) -> Response:
    """Channel ROI as CSV."""
    data, rows = _roi(db, ctx, date_from, date_to, dimension)
    header = [
        "channel",
        "cost_fen",
        "customers",
        "cost_per_customer_fen",
        "revenue_fen",
        "predicted_clv_fen",
        "roi",
        "predicted_roi",
        "name",
    ]
    return csv_download(
        ctx,
        header,
        (
            [
                r.channel,
                r.cost_fen,
                r.customers,
                r.cost_per_customer_fen,
                r.revenue_fen,
                r.predicted_clv_fen,
                r.roi,
                r.predicted_roi,
                item["name"],
            ]
            for r, item in zip(rows, data["rows"], strict=True)
        ),
        "roi.csv",
    )


def yuan_to_fen(text: str) -> int:
    """A yuan amount typed in a form ("1,200.50") as integer fen; at most two decimals."""
    try:
        value = Decimal(text.replace(",", "").replace("¥", "").strip())
    except InvalidOperation:
        raise ValueError(f"cost {text!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"cost {text!r} must be zero or more")
    fen = value * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"cost {text!r} has more than two decimals")
    return int(fen)


@router.post("/roi/costs")
def roi_add_cost(
    request: Request,
    db: DbSession,
    ctx: Console,
    channel: Annotated[str, Form()] = "",
    dimension: Annotated[str, Form()] = "source",
    period_start: Annotated[str, Form()] = "",
    period_end: Annotated[str, Form()] = "",
    cost_yuan: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> Response:
    """Record a marketing cost for a channel and period, then show the ROI table again."""
    org = _org(ctx)
    given = {
        "channel": channel,
        "dimension": dimension,
        "period_start": period_start,
        "period_end": period_end,
        "cost_yuan": cost_yuan,
        "note": note,
    }
    try:
        body = ChannelCostIn(
            dimension=CostDimension(dimension) if dimension in ("source", "channel") else dimension,
            channel=channel.strip(),
            period_start=period_start,
            period_end=period_end,
            cost_fen=yuan_to_fen(cost_yuan),
            note=note.strip(),
        )
        service.create_channel_cost(db, org, body, ctx.principal.user_id if ctx.principal else None)
    except (ValidationError, ValueError, DomainError) as exc:
        data, _ = _roi(db, ctx, "", "", dimension, form_error=_error_text(exc), cost_form=given)
        return render(ctx, "analytics/roi.html", status_code=422, **_base(ctx, "roi"), **data)
    return RedirectResponse(f"/analytics/roi?dimension={body.dimension.value}&added=1", status_code=303)
