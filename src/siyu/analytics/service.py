"""Analytics use cases for the API, the console and the CLI: queries on the projection, channel-cost CRUD.

Every function takes the organization explicitly and scopes every query to it. Analytics are
admin-only (owners and admins): operators are refused at the endpoint, because the projection holds
the whole organization's events and orders, not per-operator visibility.
"""

from __future__ import annotations

import atexit
import threading
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.analytics.commerce import CommerceRow, commerce_metrics
from siyu.analytics.dashboard import OrgCounts, added_per_day, org_counts
from siyu.analytics.engines import AnalyticsEngine
from siyu.analytics.funnels import FunnelQuery, FunnelResult, Step, parse_modes, run_funnel
from siyu.analytics.models import ChannelCost, CostDimension
from siyu.analytics.projection import Projection, default_path, projection_for
from siyu.analytics.retention import RetentionCohort, RetentionQuery, run_retention
from siyu.analytics.rfm import CustomerRFM, RFMReport, customer_rfm, rfm_report
from siyu.analytics.roi import ChannelROI, ROIDimension, roi_report
from siyu.analytics.schemas import (
    ChannelCostIn,
    ChannelCostPatch,
    CLVBinOut,
    CLVDistributionOut,
    FunnelIn,
    RetentionIn,
    StepIn,
)
from siyu.analytics.tasks import after_bulk_write
from siyu.kit.errors import Invalid, NotFound

# The dashboard's counts (for web/) and the hook of bulk writers in other domains.
__all__ = ["OrgCounts", "added_per_day", "after_bulk_write", "org_counts"]

MAX_BINS = 100
_app_lock = threading.Lock()

# FunnelQuery/RetentionQuery raise ValueError with a message; map its opening words to the API field.
_FIELD_OF_MESSAGE = (
    ("a funnel needs", "steps"),
    ("step", "steps"),
    ("window", "window_seconds"),
    ("unknown funnel mode", "modes"),
    ("breakdown", "breakdown"),
    ("date_from", "date_from"),
    ("date_to", "date_to"),
    ("period", "period"),
    ("utc_offset", "utc_offset_minutes"),
    ("start and returning", "start"),
)


def projection_of_app(state: Any) -> Projection:
    """The app's projection (created on first use in ``<data_dir>/analytics.duckdb``)."""
    proj = getattr(state, "analytics_projection", None)
    if proj is None:
        with _app_lock:
            proj = getattr(state, "analytics_projection", None)
            if proj is None:
                # The process-wide one: the worker's jobs in this process refresh the same DuckDB file.
                proj = projection_for(state.engine, default_path(state.settings.data_dir))
                state.analytics_projection = proj
                # Close DuckDB before interpreter teardown (its bindings complain about live objects).
                atexit.register(proj.close)
    return proj


def has_orders(engine: AnalyticsEngine, org_id: int) -> bool:
    """Whether the organization has any projected order (what a CLV fit needs first)."""
    return bool(engine.query(f"SELECT 1 FROM orders WHERE org_id = {int(org_id)} LIMIT 1"))


def _invalid(exc: ValueError) -> Invalid:
    message = str(exc)
    for prefix, field in _FIELD_OF_MESSAGE:
        if message.startswith(prefix):
            return Invalid(message, field=field)
    return Invalid(message)


def _step(s: StepIn, field: str) -> Step:
    try:
        return Step(s.event_type, dict(s.properties))
    except ValueError as exc:
        raise Invalid(str(exc), field=field) from None


def funnel(
    engine: AnalyticsEngine, org_id: int, body: FunnelIn, *, memo: Projection | None = None
) -> list[FunnelResult]:
    """Run a funnel request on the projection (bad steps, modes or breakdowns are 422 naming the field).

    With ``memo`` (the projection ``engine`` belongs to, held locked), the result is reused until it next changes.
    """
    steps = [_step(s, f"steps.{i}") for i, s in enumerate(body.steps)]
    try:
        q = FunnelQuery(
            org_id=org_id,
            steps=steps,
            window=timedelta(seconds=body.window_seconds),
            modes=parse_modes(body.modes),
            date_from=body.date_from,
            date_to=body.date_to,
            breakdown=body.breakdown,
        )
    except ValueError as exc:
        raise _invalid(exc) from None
    if memo is None:
        return run_funnel(engine, q)
    # repr: a query holds dicts (step properties), so it is not hashable itself.
    return list(memo.memo(("funnel", repr(q)), lambda: tuple(run_funnel(engine, q))))


def retention(
    engine: AnalyticsEngine, org_id: int, body: RetentionIn, *, memo: Projection | None = None
) -> list[RetentionCohort]:
    """Run a retention request on the projection (``memo``: as for :func:`funnel`)."""
    try:
        q = RetentionQuery(
            org_id=org_id,
            start=_step(body.start, "start"),
            returning=_step(body.returning, "returning"),
            period=body.period,
            periods=body.periods,
            first_time=body.first_time,
            on_or_after=body.on_or_after,
            date_from=body.date_from,
            date_to=body.date_to,
            breakdown=body.breakdown,
            utc_offset_minutes=body.utc_offset_minutes,
        )
    except ValueError as exc:
        raise _invalid(exc) from None
    if memo is None:
        return run_retention(engine, q)
    return list(memo.memo(("retention", repr(q)), lambda: tuple(run_retention(engine, q))))


def commerce(engine: AnalyticsEngine, org_id: int, **kw: Any) -> list[CommerceRow]:
    """Commerce metrics (see siyu.analytics.commerce.commerce_metrics)."""
    return commerce_metrics(engine, org_id, **kw)


def rfm_cell(engine: AnalyticsEngine, org_id: int, r: int, f: int, **kw: Any) -> list[CustomerRFM]:
    """The buyers of one cell of the recency x frequency grid, biggest spenders first."""
    rows = [x for x in customer_rfm(engine, org_id, **kw) if x.r == r and x.f == f]
    return sorted(rows, key=lambda x: (-x.monetary_fen, x.customer_id))


def rfm(engine: AnalyticsEngine, org_id: int, **kw: Any) -> RFMReport:
    """RFM segment counts and grid (see siyu.analytics.rfm.rfm_report)."""
    return rfm_report(engine, org_id, **kw)


def clv_distribution(engine: AnalyticsEngine, org_id: int, bins: int = 20) -> CLVDistributionOut:
    """Histogram of predicted CLV in equal-width bins from the smallest to the largest value."""
    if not 1 <= bins <= MAX_BINS:
        raise Invalid(f"bins must be 1..{MAX_BINS}, got {bins}", field="bins")
    org = int(org_id)
    n, total, mean_p, lo, hi = engine.query(
        f"SELECT count(*), coalesce(sum(clv_fen), 0), avg(p_alive), min(clv_fen), max(clv_fen) "
        f"FROM customer_values WHERE org_id = {org}"
    )[0]
    n, total = int(n), int(total)
    if n == 0:
        return CLVDistributionOut(customers=0, total_clv_fen=0, mean_clv_fen=None, mean_p_alive=None, bins=[])
    lo, hi = int(lo), int(hi)
    width = max(1, -(-(hi - lo + 1) // bins))  # ceil, so the largest value falls in the last bin
    counts = dict(
        engine.query(
            f"SELECT (clv_fen - {lo}) // {width} AS b, count(*) FROM customer_values WHERE org_id = {org} GROUP BY b"
        )
    )
    used = (hi - lo) // width + 1
    out = [
        CLVBinOut(lower_fen=lo + i * width, upper_fen=lo + (i + 1) * width, customers=int(counts.get(i, 0)))
        for i in range(used)
    ]
    return CLVDistributionOut(
        customers=n,
        total_clv_fen=total,
        mean_clv_fen=round(total / n),
        mean_p_alive=None if mean_p is None else float(mean_p),
        bins=out,
    )


def channel_roi(
    db: Session,
    engine: AnalyticsEngine,
    org_id: int,
    *,
    date_from: date,
    date_to: date,
    dimension: ROIDimension | str = ROIDimension.source,
    utc_offset_minutes: int = 480,
    buyers: str | None = None,
) -> list[ChannelROI]:
    """ROI per source, channel, code or account (see siyu.analytics.roi.roi_report)."""
    return roi_report(
        db,
        engine,
        org_id,
        date_from=date_from,
        date_to=date_to,
        dimension=dimension,
        utc_offset_minutes=utc_offset_minutes,
        buyers=buyers,
    )


# -- channel costs ------------------------------------------------------------------------------


def list_channel_costs(
    db: Session, org_id: int, *, dimension: CostDimension | None = None, channel: str | None = None
) -> list[ChannelCost]:
    """An organization's channel costs, newest period first."""
    q = select(ChannelCost).where(ChannelCost.org_id == org_id)
    if dimension is not None:
        q = q.where(ChannelCost.dimension == dimension)
    if channel is not None:
        q = q.where(ChannelCost.channel == channel)
    return list(db.scalars(q.order_by(ChannelCost.period_start.desc(), ChannelCost.id.desc())))


def get_channel_cost(db: Session, org_id: int, cost_id: int) -> ChannelCost:
    """One channel cost of the organization (404 for another organization's)."""
    cost = db.get(ChannelCost, cost_id)
    if cost is None or cost.org_id != org_id:
        raise NotFound(f"channel cost {cost_id} not found", field="cost_id")
    return cost


def create_channel_cost(
    db: Session, org_id: int, data: ChannelCostIn, actor_id: int | None = None
) -> ChannelCost:
    """Record a cost for a channel and period."""
    cost = ChannelCost(
        org_id=org_id,
        dimension=data.dimension,
        channel=data.channel.strip(),
        period_start=data.period_start,
        period_end=data.period_end,
        cost_fen=data.cost_fen,
        note=data.note,
        created_by=actor_id,
    )
    if not cost.channel:
        raise Invalid("channel must not be blank", field="channel")
    db.add(cost)
    db.flush()
    return cost


def update_channel_cost(db: Session, org_id: int, cost_id: int, patch: ChannelCostPatch) -> ChannelCost:
    """Change a channel cost; the period must stay in order."""
    cost = get_channel_cost(db, org_id, cost_id)
    for name, value in patch.model_dump(exclude_unset=True).items():
        if value is None:
            raise Invalid(f"{name} cannot be null", field=name)
        setattr(cost, name, value.strip() if isinstance(value, str) and name == "channel" else value)
    if cost.period_end < cost.period_start:
        raise Invalid("period_end must not be before period_start", field="period_end")
    db.flush()
    return cost


def delete_channel_cost(db: Session, org_id: int, cost_id: int) -> None:
    """Delete a channel cost."""
    db.delete(get_channel_cost(db, org_id, cost_id))
    db.flush()
