"""Commerce metrics on the projection: conversion, repurchase, order value, margin and refunds per group.

Two families of figures share one row per group value:

* Customer metrics, over the *acquisition cohort*: the customers first seen in the date range
  (all customers without a range). ``buyers`` are those of them with at least one order to date,
  ``repeat_buyers`` those with two or more; ``first_order_conversion = buyers / customers`` and
  ``repurchase_rate = repeat_buyers / buyers``.
* Order metrics, over the orders *paid* in the date range: ``orders``, ``revenue_fen`` (paid
  amounts), ``refunded_fen``, ``net_revenue_fen``, ``aov_fen = revenue / orders`` (rounded),
  ``refund_rate = refunded / revenue``, and gross margin over the orders whose cost is known
  (every line has a unit cost): ``gross_margin_fen = net - cost`` and
  ``gross_margin_rate = gross_margin_fen / net`` of those orders.

Groups: a column of the ``customers`` dimension (source, channel, stage, account_id, operator_id;
first-touch values), so an order counts under its buyer's group; or ``month``, which is the
acquisition month for customer metrics and the payment month for order metrics, both in local time
(``utc_offset_minutes``, 480 = Asia/Shanghai). Customer-group breakdowns come when customer groups
are projected (not yet: they are not a customer dimension).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from siyu.analytics.engines import AnalyticsEngine
from siyu.analytics.funnels import sql_timestamp
from siyu.analytics.schema import BREAKDOWN_COLUMNS, shift_minutes
from siyu.kit.errors import Invalid

COMMERCE_GROUPS: tuple[str, ...] = ("source", "channel", "stage", "account_id", "operator_id", "month")


@dataclass(frozen=True, slots=True)
class CommerceRow:
    """The commerce figures of one group value (None: no breakdown, or customers without a value)."""

    group: Any
    customers: int
    buyers: int
    repeat_buyers: int
    first_order_conversion: float | None
    repurchase_rate: float | None
    orders: int
    revenue_fen: int
    refunded_fen: int
    net_revenue_fen: int
    aov_fen: int | None
    refund_rate: float | None
    cost_known_orders: int
    cost_fen: int
    gross_margin_fen: int | None
    gross_margin_rate: float | None


def _month(column: str, offset: int) -> str:
    return f"strftime({shift_minutes(column, offset)}, '%Y-%m')"


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def commerce_sql(
    org_id: int, by: str | None, date_from: datetime | None, date_to: datetime | None, utc_offset_minutes: int
) -> str:
    """DuckDB SQL: one row per group value with the raw sums that CommerceRow is computed from."""
    org = int(org_id)
    # Orders meet their customer's row only to be grouped by one of its columns: overall and per month
    # they do without the join (one fewer hash join of every order with every customer, the row unique).
    dims = ""
    if by is None:
        cg, og = "NULL", "NULL"
    elif by == "month":
        cg, og = _month("first_seen_at", utc_offset_minutes), _month("o.paid_at", utc_offset_minutes)
    else:
        cg, og = by, f"d.{by}"
        dims = f"LEFT JOIN customers AS d ON d.org_id = {org} AND d.customer_id = o.customer_id "
    cust_where = [f"org_id = {org}"]
    order_where = [f"o.org_id = {org}"]
    if date_from is not None:
        cust_where.append(f"first_seen_at >= {sql_timestamp(date_from)}")
        order_where.append(f"o.paid_at >= {sql_timestamp(date_from)}")
    if date_to is not None:
        cust_where.append(f"first_seen_at < {sql_timestamp(date_to)}")
        order_where.append(f"o.paid_at < {sql_timestamp(date_to)}")
    return (
        f"WITH c AS (SELECT customer_id, CAST({cg} AS VARCHAR) AS g FROM customers WHERE {' AND '.join(cust_where)}), "
        f"n AS (SELECT customer_id, count(*) AS k FROM orders WHERE org_id = {org} GROUP BY customer_id), "
        # Buyers from the inner join of buyers with the cohort (a row per buyer, customer_id being unique in
        # both), the cohort counted apart: joining every customer to a possible buyer row took twice as long.
        "b AS (SELECT c.g AS g, count(*) AS buyers, sum(CASE WHEN n.k >= 2 THEN 1 ELSE 0 END) AS repeat_buyers "
        "FROM n JOIN c ON c.customer_id = n.customer_id GROUP BY c.g), "
        "cm AS (SELECT a.g AS g, a.customers, coalesce(b.buyers, 0) AS buyers, "
        "coalesce(b.repeat_buyers, 0) AS repeat_buyers FROM (SELECT g, count(*) AS customers FROM c GROUP BY g) AS a "
        "LEFT JOIN b ON a.g IS NOT DISTINCT FROM b.g), "
        f"om AS (SELECT CAST({og} AS VARCHAR) AS g, count(*) AS orders, sum(o.amount_fen) AS revenue, "
        "sum(o.refunded_fen) AS refunded, sum(CASE WHEN o.cost_fen IS NOT NULL THEN 1 ELSE 0 END) AS cost_orders, "
        "coalesce(sum(o.cost_fen), 0) AS cost, "
        "sum(CASE WHEN o.cost_fen IS NOT NULL THEN o.amount_fen - o.refunded_fen END) AS cost_net "
        f"FROM orders AS o {dims}"
        f"WHERE {' AND '.join(order_where)} GROUP BY 1) "
        "SELECT coalesce(cm.g, om.g) AS g, coalesce(cm.customers, 0), coalesce(cm.buyers, 0), "
        "coalesce(cm.repeat_buyers, 0), coalesce(om.orders, 0), coalesce(om.revenue, 0), coalesce(om.refunded, 0), "
        "coalesce(om.cost_orders, 0), coalesce(om.cost, 0), om.cost_net "
        "FROM cm FULL OUTER JOIN om ON cm.g IS NOT DISTINCT FROM om.g"
    )


def _typed_group(by: str | None, value: Any) -> Any:
    # Groups travel as text so both halves of the FULL JOIN agree; ids go back to integers.
    if value is not None and by in ("account_id", "operator_id"):
        return int(value)
    return value


def commerce_metrics(
    engine: AnalyticsEngine,
    org_id: int,
    *,
    by: str | None = None,
    date_from: datetime | None = None,
    date_to: datetime | None = None,
    utc_offset_minutes: int = 480,
) -> list[CommerceRow]:
    """Commerce figures of one organization, overall or per group value (see the module docstring)."""
    if by is not None and by not in COMMERCE_GROUPS:
        raise Invalid(f"by must be one of {list(COMMERCE_GROUPS)}, got {by!r}", field="by")
    assert by is None or by == "month" or by in BREAKDOWN_COLUMNS
    if date_from is not None and date_to is not None and date_from >= date_to:
        raise Invalid("date_from must be before date_to", field="date_from")
    rows = engine.query(commerce_sql(org_id, by, date_from, date_to, utc_offset_minutes))
    out: list[CommerceRow] = []
    for g, customers, buyers, repeat, orders, revenue, refunded, cost_orders, cost, cost_net in rows:
        customers, buyers, repeat, orders = int(customers), int(buyers), int(repeat), int(orders)
        revenue, refunded, cost_orders, cost = int(revenue), int(refunded), int(cost_orders), int(cost)
        margin = None if cost_net is None else int(cost_net) - cost
        out.append(
            CommerceRow(
                group=_typed_group(by, g),
                customers=customers,
                buyers=buyers,
                repeat_buyers=repeat,
                first_order_conversion=_ratio(buyers, customers),
                repurchase_rate=_ratio(repeat, buyers),
                orders=orders,
                revenue_fen=revenue,
                refunded_fen=refunded,
                net_revenue_fen=revenue - refunded,
                aov_fen=round(revenue / orders) if orders else None,
                refund_rate=_ratio(refunded, revenue),
                cost_known_orders=cost_orders,
                cost_fen=cost,
                gross_margin_fen=margin,
                gross_margin_rate=None if margin is None else _ratio(margin, int(cost_net)),
            )
        )
    if by is None and not out:
        out.append(CommerceRow(None, 0, 0, 0, None, None, 0, 0, 0, 0, None, None, 0, 0, None, None))
    out.sort(key=lambda r: (r.group is not None, str(r.group)))
    return out
