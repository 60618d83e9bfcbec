"""Channel ROI: acquisition cost against the revenue and predicted CLV of the customers it brought.

For a range of local dates [date_from, date_to] (both inclusive), broken down by one of
:class:`ROIDimension`: the customer's ``source``, first-touch ``channel`` (the state the follow
carried), channel ``code`` (that state when it is one of the organization's codes, else None) or
``account`` (the carrier account that received the customer, first touch; keys are account ids):

* ``customers``: customers of that value first seen in the range;
* ``revenue_fen``: what those customers have paid to date, net of refunds;
* ``predicted_clv_fen``: the sum of their CLV (expected discounted future value, from the CLV job);
* ``cost_fen``: see the cost rule below;
* ``roi = (revenue - cost) / cost`` and ``predicted_roi = (revenue + predicted CLV - cost) / cost``
  (None without cost); ``cost_per_customer_fen = cost / customers`` (None without customers).

Cost rule. Costs are recorded in two ledgers, and a sum of money belongs to one of them:

* the source ledger: ``channel_costs`` rows with dimension ``source``, keyed by source;
* the code ledger, keyed by code state: ``channel_costs`` rows with dimension ``channel``, and the
  code's own ``cost_fen`` for a code whose state no such row names (a row naming the state replaces
  the code's own figure, for every range: never both). A code's own cost is a one-off, counted on
  the local day the code was created. :func:`code_costs` is the one place this is decided; the
  channels report (cost per add) uses it too.

Period rows are prorated by the days they share with the range (a 30-day cost of 3,000 fen counts
100 fen per overlapping day). Each breakdown then reads:

* ``channel`` and ``code``: the code ledger (spend recorded only by source names no code);
* ``source``: the source ledger, plus code-ledger costs shared over the sources of the customers
  each code brought in the range, except onto a source that has a source-ledger cost in the range
  (that row is the whole spend on the source, its codes included: adding them would count twice);
* ``account``: the same costs as ``source`` (so both total the same), each shared over the accounts
  of the customers it paid for in proportion to their number.

A cost that has no customer in the range to be shared over lands on the None row.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.analytics.engines import AnalyticsEngine
from siyu.analytics.funnels import sql_timestamp
from siyu.analytics.models import ChannelCost, CostDimension
from siyu.channels import service as channels
from siyu.kit.clock import ensure_utc
from siyu.kit.errors import Invalid


class ROIDimension(enum.StrEnum):
    """What ROI rows are broken down by (see the module docstring)."""

    source = "source"
    channel = "channel"
    code = "code"
    account = "account"


@dataclass(frozen=True, slots=True)
class ChannelROI:
    """One breakdown value's cost, customers, revenue, predicted value and returns over the range."""

    channel: str | None
    cost_fen: int
    customers: int
    cost_per_customer_fen: int | None
    revenue_fen: int
    predicted_clv_fen: int
    roi: float | None
    predicted_roi: float | None


@dataclass(frozen=True, slots=True)
class AcquiredGroup:
    """Customers first seen in the range with one (source, channel state, account), and their value."""

    source: str | None
    channel: str | None
    account_id: int | None
    customers: int
    revenue_fen: int
    predicted_clv_fen: int


def local_day_start(day: date, utc_offset_minutes: int) -> datetime:
    """The UTC instant at which a local date starts."""
    return datetime.combine(day, time(0), tzinfo=UTC) - timedelta(minutes=utc_offset_minutes)


def _prorated(
    db: Session, org_id: int, dimension: CostDimension, date_from: date, date_to: date
) -> dict[str, Fraction]:
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
    return exact


def prorated_costs(
    db: Session, org_id: int, dimension: CostDimension, date_from: date, date_to: date
) -> dict[str, int]:
    """Each channel's cost over [date_from, date_to], prorated by overlapping days, rounded to fen."""
    return {k: round(v) for k, v in _prorated(db, org_id, dimension, date_from, date_to).items()}


def _code_costs(
    db: Session, org_id: int, date_from: date, date_to: date, utc_offset_minutes: int
) -> dict[str, Fraction]:
    exact = _prorated(db, org_id, CostDimension.channel, date_from, date_to)
    named = set(
        db.scalars(
            select(ChannelCost.channel).where(
                ChannelCost.org_id == org_id, ChannelCost.dimension == CostDimension.channel
            )
        )
    )
    for code in channels.list_codes(db, org_id):
        if not code.cost_fen or code.state in named:
            continue
        created = (ensure_utc(code.created_at) + timedelta(minutes=utc_offset_minutes)).date()
        if date_from <= created <= date_to:
            exact[code.state] += code.cost_fen
    return exact


def code_costs(
    db: Session, org_id: int, date_from: date, date_to: date, *, utc_offset_minutes: int = 480
) -> dict[str, int]:
    """The code ledger over the range, per code state, rounded to fen (the rule is in the module docstring)."""
    return {k: round(v) for k, v in _code_costs(db, org_id, date_from, date_to, utc_offset_minutes).items()}


def acquired_groups(
    engine: AnalyticsEngine, org_id: int, start: datetime, end: datetime, *, buyers: str | None = None
) -> list[AcquiredGroup]:
    """Customers first seen in [start, end) per (source, channel state, account), with revenue and CLV.

    ``buyers``: a query of every buyer's net paid to date (customer_id, m), such as the projection's
    maintained totals; by default the orders are summed.
    """
    org = int(org_id)
    rev = (
        f"SELECT customer_id, m AS net FROM ({buyers})"
        if buyers
        else f"SELECT customer_id, sum(amount_fen - refunded_fen) AS net FROM orders WHERE org_id = {org} "
        "GROUP BY customer_id"
    )
    sql = (
        "WITH c AS (SELECT customer_id, source, channel, account_id FROM customers "
        f"WHERE org_id = {org} AND first_seen_at >= {sql_timestamp(start)} AND first_seen_at < {sql_timestamp(end)}), "
        f"rev AS ({rev}) "
        "SELECT c.source, c.channel, c.account_id, count(*), coalesce(sum(rev.net), 0), "
        "coalesce(sum(v.clv_fen), 0) FROM c "
        "LEFT JOIN rev ON rev.customer_id = c.customer_id "
        f"LEFT JOIN customer_values AS v ON v.org_id = {org} AND v.customer_id = c.customer_id "
        "GROUP BY c.source, c.channel, c.account_id"
    )
    return [
        AcquiredGroup(r[0], r[1], None if r[2] is None else int(r[2]), int(r[3]), int(r[4]), int(r[5]))
        for r in engine.query(sql)
    ]


def _share(
    cost: Fraction,
    groups: list[AcquiredGroup],
    key: dict[int, str | None],
    out: dict[str | None, Fraction],
    covered: Iterable[str | None] = (),
) -> None:
    """Split one cost over groups by their customers (onto None when they have none); the shares of
    groups whose source is ``covered`` (paid by that source's own cost) are dropped."""
    total = sum(g.customers for g in groups)
    if not total:
        out[None] += cost
        return
    skip = set(covered)
    for g in groups:
        if g.source not in skip:
            out[key[id(g)]] += cost * g.customers / total


def allocate_costs(
    groups: Iterable[AcquiredGroup],
    dimension: ROIDimension,
    source_costs: dict[str, Fraction],
    code_ledger: dict[str, Fraction],
    code_states: set[str],
) -> tuple[dict[str | None, Fraction], dict[str | None, tuple[int, int, int]]]:
    """Cost and (customers, revenue, CLV) per breakdown value, by the cost rule of the module docstring."""
    groups = list(groups)

    def key_of(g: AcquiredGroup) -> str | None:
        if dimension is ROIDimension.source:
            return g.source
        if dimension is ROIDimension.channel:
            return g.channel
        if dimension is ROIDimension.code:
            return g.channel if g.channel in code_states else None
        return None if g.account_id is None else str(g.account_id)

    key = {id(g): key_of(g) for g in groups}
    acquired: dict[str | None, tuple[int, int, int]] = {}
    for g in groups:
        n, rev, clv = acquired.get(key[id(g)], (0, 0, 0))
        acquired[key[id(g)]] = (n + g.customers, rev + g.revenue_fen, clv + g.predicted_clv_fen)
    cost: dict[str | None, Fraction] = defaultdict(Fraction)
    if dimension in (ROIDimension.channel, ROIDimension.code):
        for state, amount in code_ledger.items():
            cost[state if dimension is ROIDimension.channel or state in code_states else None] += amount
        return cost, acquired
    for src, amount in source_costs.items():
        if dimension is ROIDimension.source:
            cost[src] += amount
        else:
            _share(amount, [g for g in groups if g.source == src], key, cost)
    for state, amount in code_ledger.items():
        _share(amount, [g for g in groups if g.channel == state], key, cost, covered=source_costs)
    return cost, acquired


def roi_report(
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
    """ROI per breakdown value for one organization (values with a cost or with acquired customers).

    ``buyers`` as :func:`acquired_groups` takes it.
    """
    try:
        dim = ROIDimension(dimension)
    except ValueError:
        raise Invalid(
            f"dimension must be one of {[d.value for d in ROIDimension]}, got {dimension!r}",
            field="dimension",
        ) from None
    if date_to < date_from:
        raise Invalid("date_to must not be before date_from", field="date_to")
    start = local_day_start(date_from, utc_offset_minutes)
    end = local_day_start(date_to + timedelta(days=1), utc_offset_minutes)
    cost, acquired = allocate_costs(
        acquired_groups(engine, org_id, start, end, buyers=buyers),
        dim,
        _prorated(db, org_id, CostDimension.source, date_from, date_to),
        _code_costs(db, org_id, date_from, date_to, utc_offset_minutes),
        {c.state for c in channels.list_codes(db, org_id)},
    )
    out = []
    for channel in set(cost) | set(acquired):
        fen = round(cost.get(channel, Fraction(0)))
        customers, revenue, clv = acquired.get(channel, (0, 0, 0))
        if not fen and not customers:
            continue
        out.append(
            ChannelROI(
                channel=channel,
                cost_fen=fen,
                customers=customers,
                cost_per_customer_fen=round(fen / customers) if customers else None,
                revenue_fen=revenue,
                predicted_clv_fen=clv,
                roi=(revenue - fen) / fen if fen else None,
                predicted_roi=(revenue + clv - fen) / fen if fen else None,
            )
        )
    out.sort(key=lambda r: (r.channel is None, r.channel or ""))
    return out
