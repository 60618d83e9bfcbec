"""Channel ROI: acquisition cost per channel against the revenue and predicted CLV of the customers it brought.

For a range of local dates [date_from, date_to] (both inclusive) and a dimension (the customer's
``source`` or first-touch ``channel`` code):

* ``cost_fen``: the channel's costs (``channel_costs``) prorated by the days their period shares
  with the range (a 30-day cost of 3,000 fen contributes 100 fen per overlapping day);
* ``customers``: customers of that channel first seen in the range;
* ``revenue_fen``: what those customers have paid to date, net of refunds;
* ``predicted_clv_fen``: the sum of their CLV (expected discounted future value, from the CLV job);
* ``roi = (revenue - cost) / cost`` and ``predicted_roi = (revenue + predicted CLV - cost) / cost``
  (None without cost); ``cost_per_customer_fen = cost / customers`` (None without customers).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.analytics.engines import AnalyticsEngine
from siyu.analytics.funnels import sql_timestamp
from siyu.analytics.models import ChannelCost, CostDimension
from siyu.kit.errors import Invalid


@dataclass(frozen=True, slots=True)
class ChannelROI:
    """One channel's cost, customers, revenue, predicted value and returns over the range."""

    channel: str | None
    cost_fen: int
    customers: int
    cost_per_customer_fen: int | None
    revenue_fen: int
    predicted_clv_fen: int
    roi: float | None
    predicted_roi: float | None


def local_day_start(day: date, utc_offset_minutes: int) -> datetime:
    """The UTC instant at which a local date starts."""
    return datetime.combine(day, time(0), tzinfo=UTC) - timedelta(minutes=utc_offset_minutes)


def prorated_costs(
    db: Session, org_id: int, dimension: CostDimension, date_from: date, date_to: date
) -> dict[str, int]:
    """Each channel's cost over [date_from, date_to], prorated by overlapping days, rounded to fen."""
    rows = db.execute(
        select(
            ChannelCost.channel, ChannelCost.period_start, ChannelCost.period_end, ChannelCost.cost_fen
        ).where(
            ChannelCost.org_id == org_id,
            ChannelCost.dimension == dimension,
            ChannelCost.period_start <= date_to,
            ChannelCost.period_end >= date_from,
        )
    ).all()
    exact: dict[str, Fraction] = defaultdict(Fraction)
    for channel, start, end, cost in rows:
        overlap = (min(end, date_to) - max(start, date_from)).days + 1
        exact[channel] += Fraction(cost * overlap, (end - start).days + 1)
    return {k: round(v) for k, v in exact.items()}


def roi_report(
    db: Session,
    engine: AnalyticsEngine,
    org_id: int,
    *,
    date_from: date,
    date_to: date,
    dimension: CostDimension | str = CostDimension.source,
    utc_offset_minutes: int = 480,
) -> list[ChannelROI]:
    """ROI per channel for one organization (channels with a cost or with acquired customers)."""
    try:
        dim = CostDimension(dimension)
    except ValueError:
        raise Invalid(
            f"dimension must be one of {[d.value for d in CostDimension]}, got {dimension!r}",
            field="dimension",
        ) from None
    if date_to < date_from:
        raise Invalid("date_to must not be before date_from", field="date_to")
    costs = prorated_costs(db, org_id, dim, date_from, date_to)
    start = local_day_start(date_from, utc_offset_minutes)
    end = local_day_start(date_to + timedelta(days=1), utc_offset_minutes)
    org = int(org_id)
    sql = (
        f"WITH c AS (SELECT customer_id, {dim.value} AS ch FROM customers WHERE org_id = {org} "
        f"AND first_seen_at >= {sql_timestamp(start)} AND first_seen_at < {sql_timestamp(end)}), "
        f"rev AS (SELECT customer_id, sum(amount_fen - refunded_fen) AS net FROM orders WHERE org_id = {org} "
        "GROUP BY customer_id) "
        "SELECT c.ch, count(*), coalesce(sum(rev.net), 0), coalesce(sum(v.clv_fen), 0) FROM c "
        "LEFT JOIN rev ON rev.customer_id = c.customer_id "
        f"LEFT JOIN customer_values AS v ON v.org_id = {org} AND v.customer_id = c.customer_id GROUP BY c.ch"
    )
    acquired = {row[0]: (int(row[1]), int(row[2]), int(row[3])) for row in engine.query(sql)}
    out = []
    for channel in set(costs) | set(acquired):
        cost = costs.get(channel, 0) if channel is not None else 0
        customers, revenue, clv = acquired.get(channel, (0, 0, 0))
        out.append(
            ChannelROI(
                channel=channel,
                cost_fen=cost,
                customers=customers,
                cost_per_customer_fen=round(cost / customers) if customers else None,
                revenue_fen=revenue,
                predicted_clv_fen=clv,
                roi=(revenue - cost) / cost if cost else None,
                predicted_roi=(revenue + clv - cost) / cost if cost else None,
            )
        )
    out.sort(key=lambda r: (r.channel is None, r.channel or ""))
    return out
