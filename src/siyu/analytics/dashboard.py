"""The dashboard's whole-organization counts, read from the analytics projection.

Counting a million customers three times per page view in the operational database took seconds;
the projection holds the same customers (live profiles only, with their stage, source and when they
were first seen) and the orders, maintained incrementally by the worker and on each analytics
request, and answers these in milliseconds. Only principals who see the whole organization read
here: the projection has no per-operator visibility (operators' counts stay in the operational
database, over their own customers).

"Added" and "new" go by ``first_seen_at``: the earlier of the profile's creation and its first
follow relation, so a first sync that brings in contacts of months ago adds none today.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from siyu.analytics.engines import AnalyticsEngine
from siyu.analytics.funnels import sql_timestamp

CONVERTED_STAGES = ("converted", "repeat")


@dataclass(frozen=True, slots=True)
class OrgCounts:
    """Customers, the recently added, the converted, and the last 30 days' orders of one organization."""

    customers: int
    added_7d: int
    new_today: int
    converted: int
    orders_30d: int
    gmv_30d_fen: int


def org_counts(engine: AnalyticsEngine, org_id: int, now: datetime, today_start: datetime) -> OrgCounts:
    """The headline counts at ``now``; ``today_start`` is the start of the local day (UTC-aware)."""
    org = int(org_id)
    stages = ", ".join(f"'{s}'" for s in CONVERTED_STAGES)
    (c,) = engine.query(
        f"SELECT count(*), count(*) FILTER (WHERE first_seen_at >= {sql_timestamp(now - timedelta(days=7))}), "
        f"count(*) FILTER (WHERE first_seen_at >= {sql_timestamp(today_start)}), "
        f"count(*) FILTER (WHERE stage IN ({stages})) FROM customers WHERE org_id = {org}"
    )
    (o,) = engine.query(
        "SELECT count(*), coalesce(sum(amount_fen), 0) FROM orders "
        f"WHERE org_id = {org} AND paid_at >= {sql_timestamp(now - timedelta(days=30))}"
    )
    return OrgCounts(
        customers=int(c[0]),
        added_7d=int(c[1] or 0),
        new_today=int(c[2] or 0),
        converted=int(c[3] or 0),
        orders_30d=int(o[0]),
        gmv_30d_fen=int(o[1] or 0),
    )


def added_per_day(
    engine: AnalyticsEngine, org_id: int, start: datetime, utc_offset_minutes: int
) -> list[tuple[date, str | None, int]]:
    """Customers first seen per local day and source from ``start`` (UTC-aware) on: (day, source, count)."""
    day = f"CAST(first_seen_at + INTERVAL {int(utc_offset_minutes)} MINUTE AS DATE)"
    rows = engine.query(
        f"SELECT {day} AS day, source, count(*) FROM customers "
        f"WHERE org_id = {int(org_id)} AND first_seen_at >= {sql_timestamp(start)} GROUP BY day, source"
    )
    return [(r[0], r[1], int(r[2])) for r in rows]
