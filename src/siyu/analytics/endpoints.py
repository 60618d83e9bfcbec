"""REST endpoints of analytics: funnels, retention, commerce metrics, RFM, CLV distribution, channel ROI and costs.

Every report answers JSON, or CSV with ``?format=csv`` (UTF-8 with a BOM so spreadsheet software
reads Chinese text). Reports refresh the projection first when it is older than a couple of seconds.
Analytics are admin-only: operators get 403 (see siyu.analytics.service).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import AfterValidator

from siyu.analytics import service
from siyu.analytics.commerce import COMMERCE_GROUPS
from siyu.analytics.models import CostDimension
from siyu.analytics.roi import ROIDimension, code_costs
from siyu.analytics.schemas import (
    ChannelCostIn,
    ChannelCostOut,
    ChannelCostPatch,
    ChannelROIOut,
    CLVDistributionOut,
    CommerceRowOut,
    FunnelIn,
    FunnelResultOut,
    RefreshOut,
    RetentionCohortOut,
    RetentionIn,
    RFMReportOut,
    check_range,
)
from siyu.channels import attribution
from siyu.channels.schemas import CodeReportOut
from siyu.kit.clock import utcnow
from siyu.kit.csvexport import csv_attachment
from siyu.kit.errors import Invalid
from siyu.tenancy.deps import AdminPrincipal, CurrentPrincipal, DbSession

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])
#: Reports under /channels that need the cost ledger analytics keeps (channels itself does not read it).
channel_reports_router = APIRouter(prefix="/api/v1/channels", tags=["channels"])


@channel_reports_router.get("/reports/codes", response_model=list[CodeReportOut])
def code_report(
    date_from: date, date_to: date, db: DbSession, principal: CurrentPrincipal
) -> list[CodeReportOut]:
    """Per code: adds, cost, cost per add and conversion of adds to a first order."""
    costs = code_costs(db, principal.org_id, date_from, date_to)
    return attribution.code_report(db, principal.org_id, date_from, date_to, costs)


Format = Annotated[Literal["json", "csv"], Query(description="json (default) or csv")]
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.post("/refresh", response_model=RefreshOut)
def refresh(request: Request, principal: AdminPrincipal) -> RefreshOut:
    """Bring the projection up to date now."""
    rep = service.projection_of_app(request.app.state).refresh(force=True)
    return RefreshOut(
        events=rep.events,
        orders=rep.orders,
        customers=rep.customers,
        merged=rep.merged,
        refunds_resynced=rep.refunds_resynced,
        seconds=rep.seconds,
    )


@router.post("/funnel", response_model=list[FunnelResultOut])
def funnel(body: FunnelIn, request: Request, principal: AdminPrincipal, format: Format = "json") -> Any:
    """An ordered funnel (windowFunnel semantics), optionally broken down by a customer dimension."""
    proj = service.projection_of_app(request.app.state)
    with proj.locked() as eng:
        results = service.funnel(eng, principal.org_id, body, memo=proj)
    if format == "csv":
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
                s.event_type,
                s.count,
                s.conversion_from_start,
                s.conversion_from_previous,
                s.median_seconds_from_previous,
            ]
            for r in results
            for s in r.steps
        )
        return csv_attachment(header, rows, "funnel.csv")
    return [
        FunnelResultOut(breakdown_value=r.breakdown_value, steps=[asdict(s) for s in r.steps])
        for r in results
    ]


@router.post("/retention", response_model=list[RetentionCohortOut])
def retention(body: RetentionIn, request: Request, principal: AdminPrincipal, format: Format = "json") -> Any:
    """Retention cohorts: counts of cohort members returning in each period."""
    proj = service.projection_of_app(request.app.state)
    with proj.locked() as eng:
        cohorts = service.retention(eng, principal.org_id, body, memo=proj)
    if format == "csv":
        header = [
            "cohort_start",
            "breakdown_value",
            "size",
            *(f"period_{i}" for i in range(body.periods + 1)),
        ]
        rows = ([c.cohort_start.isoformat(), c.breakdown_value, c.size, *c.retained] for c in cohorts)
        return csv_attachment(header, rows, "retention.csv")
    return [
        RetentionCohortOut(
            cohort_start=c.cohort_start,
            breakdown_value=c.breakdown_value,
            size=c.size,
            retained=list(c.retained),
            rates=list(c.rates),
        )
        for c in cohorts
    ]


@router.get("/commerce", response_model=list[CommerceRowOut])
def commerce(
    request: Request,
    principal: AdminPrincipal,
    by: Annotated[str | None, Query(description=f"one of {', '.join(COMMERCE_GROUPS)}")] = None,
    date_from: Annotated[datetime | None, AfterValidator(check_range)] = None,
    date_to: Annotated[datetime | None, AfterValidator(check_range)] = None,
    utc_offset_minutes: Annotated[int, Query(ge=-840, le=840)] = 480,
    format: Format = "json",
) -> Any:
    """Conversion, repurchase, order value, margin and refunds, overall or per group."""
    for name, value in (("date_from", date_from), ("date_to", date_to)):
        if value is not None and value.tzinfo is None:
            raise Invalid(f"{name} needs a UTC offset, e.g. 2026-01-01T00:00:00+08:00", field=name)
    with service.projection_of_app(request.app.state).locked() as eng:
        rows = service.commerce(
            eng,
            principal.org_id,
            by=by,
            date_from=date_from,
            date_to=date_to,
            utc_offset_minutes=utc_offset_minutes,
        )
    if format == "csv":
        header = list(CommerceRowOut.model_fields)
        return csv_attachment(header, (list(asdict(r).values()) for r in rows), "commerce.csv")
    return [CommerceRowOut(**asdict(r)) for r in rows]


@router.get("/rfm", response_model=RFMReportOut)
def rfm(
    request: Request,
    principal: AdminPrincipal,
    as_of: Annotated[datetime | None, AfterValidator(check_range)] = None,
    format: Format = "json",
) -> Any:
    """Buyers per RFM segment and the R x FM grid (CSV: one row per cell with its segment)."""
    if as_of is not None and as_of.tzinfo is None:
        raise Invalid("as_of needs a UTC offset", field="as_of")
    as_of = as_of or utcnow()
    proj = service.projection_of_app(request.app.state)
    with proj.remembering() as eng:
        report = service.rfm(
            eng, principal.org_id, as_of=as_of, buyers=proj.buyers_sql(principal.org_id, as_of)
        )
    if format == "csv":
        from siyu.analytics.rfm import segment_of

        rows = (
            [r, fm, segment_of(r, fm), report.grid[r - 1][fm - 1]]
            for r in range(5, 0, -1)
            for fm in range(1, 6)
        )
        return csv_attachment(["r", "fm", "segment", "buyers"], rows, "rfm.csv")
    return RFMReportOut(as_of=report.as_of, buyers=report.buyers, segments=report.segments, grid=report.grid)


@router.get("/clv", response_model=CLVDistributionOut)
def clv(
    request: Request,
    principal: AdminPrincipal,
    bins: Annotated[int, Query(ge=1, le=service.MAX_BINS)] = 20,
    format: Format = "json",
) -> Any:
    """The distribution of predicted CLV (written by `siyu analytics clv`)."""
    with service.projection_of_app(request.app.state).locked() as eng:
        dist = service.clv_distribution(eng, principal.org_id, bins)
    if format == "csv":
        return csv_attachment(
            ["lower_fen", "upper_fen", "customers"],
            ([b.lower_fen, b.upper_fen, b.customers] for b in dist.bins),
            "clv.csv",
        )
    return dist


@router.get("/roi", response_model=list[ChannelROIOut])
def roi(
    request: Request,
    db: DbSession,
    principal: AdminPrincipal,
    date_from: Annotated[date, AfterValidator(check_range)],
    date_to: Annotated[date, AfterValidator(check_range)],
    dimension: ROIDimension = ROIDimension.source,
    utc_offset_minutes: Annotated[int, Query(ge=-840, le=840)] = 480,
    format: Format = "json",
) -> Any:
    """Cost, acquired customers, revenue to date, predicted CLV and ROI per source, channel, code or account."""
    proj = service.projection_of_app(request.app.state)
    with proj.remembering() as eng:
        rows = service.channel_roi(
            db,
            eng,
            principal.org_id,
            date_from=date_from,
            date_to=date_to,
            dimension=dimension,
            utc_offset_minutes=utc_offset_minutes,
            buyers=proj.buyers_sql(principal.org_id),
        )
    if format == "csv":
        header = list(ChannelROIOut.model_fields)
        return csv_attachment(header, (list(asdict(r).values()) for r in rows), "roi.csv")
    return [ChannelROIOut(**asdict(r)) for r in rows]


@router.get("/channel-costs", response_model=list[ChannelCostOut])
def list_costs(
    db: DbSession,
    principal: AdminPrincipal,
    dimension: CostDimension | None = None,
    channel: str | None = None,
    format: Format = "json",
) -> Any:
    """The organization's channel costs, newest period first."""
    costs = service.list_channel_costs(db, principal.org_id, dimension=dimension, channel=channel)
    if format == "csv":
        header = list(ChannelCostOut.model_fields)
        rows = (
            [
                getattr(c, h).isoformat() if isinstance(getattr(c, h), (date, datetime)) else getattr(c, h)
                for h in header
            ]
            for c in costs
        )
        return csv_attachment(header, rows, "channel_costs.csv")
    return costs


@router.post("/channel-costs", response_model=ChannelCostOut, status_code=201)
def create_cost(body: ChannelCostIn, db: DbSession, principal: AdminPrincipal) -> Any:
    """Record a cost for a channel and period."""
    return service.create_channel_cost(db, principal.org_id, body, principal.user_id)


@router.get("/channel-costs/{cost_id}", response_model=ChannelCostOut)
def get_cost(cost_id: Id, db: DbSession, principal: AdminPrincipal) -> Any:
    """One channel cost."""
    return service.get_channel_cost(db, principal.org_id, cost_id)


@router.patch("/channel-costs/{cost_id}", response_model=ChannelCostOut)
def update_cost(cost_id: Id, body: ChannelCostPatch, db: DbSession, principal: AdminPrincipal) -> Any:
    """Change a channel cost."""
    return service.update_channel_cost(db, principal.org_id, cost_id, body)


@router.delete("/channel-costs/{cost_id}", status_code=204)
def delete_cost(cost_id: Id, db: DbSession, principal: AdminPrincipal) -> Response:
    """Delete a channel cost."""
    service.delete_channel_cost(db, principal.org_id, cost_id)
    return Response(status_code=204)
