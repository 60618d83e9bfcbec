"""RFM: recency, frequency and monetary scores of buyers, and named segments.

Over one organization's buyers (customers with an order paid at or before ``as_of``):
recency is the time since the last order, frequency the number of orders, monetary the net amount
paid (amount - refunds, fen). Each becomes a score 1..5; 5 is best (most recent, most orders, most money).

Recency and monetary are scored by quintile of rank: ``score = 1 + floor(5 * (rank - 1) / n)`` with
SQL ``rank()`` (ties share the lowest rank, so equal values always get equal scores).

Frequency is scored by the order count itself: 1 order is F1, 2 orders F2, 3 F3, 4 F4, 5 or more F5.
Quintiles of rank cannot score it: most buyers of a private-domain shop order once, so they tie for the
lowest rank and fill the first quintiles, and the next order count jumps straight to F4 or F5, leaving
F2 and F3 empty; counting orders keeps every column meaningful and the same across organizations.

Segments use the common 11-segment map on R and FM, where FM is the mean of the F and M scores
rounded half up. The grid (rows R 5..1, columns FM 1..5)::

        FM=1            FM=2                 FM=3                 FM=4       FM=5
  R=5   new_customers   potential_loyalists  potential_loyalists  champions  champions
  R=4   promising       potential_loyalists  potential_loyalists  loyal      loyal
  R=3   about_to_sleep  about_to_sleep       need_attention       loyal      loyal
  R=2   hibernating     hibernating          at_risk              at_risk    cant_lose
  R=1   lost            hibernating          at_risk              at_risk    cant_lose
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from siyu.analytics.engines import AnalyticsEngine
from siyu.analytics.funnels import sql_timestamp
from siyu.kit.clock import utcnow

SEGMENTS: tuple[str, ...] = (
    "champions",
    "loyal",
    "potential_loyalists",
    "new_customers",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cant_lose",
    "hibernating",
    "lost",
)

_ROWS: dict[int, tuple[str, str, str, str, str]] = {
    5: ("new_customers", "potential_loyalists", "potential_loyalists", "champions", "champions"),
    4: ("promising", "potential_loyalists", "potential_loyalists", "loyal", "loyal"),
    3: ("about_to_sleep", "about_to_sleep", "need_attention", "loyal", "loyal"),
    2: ("hibernating", "hibernating", "at_risk", "at_risk", "cant_lose"),
    1: ("lost", "hibernating", "at_risk", "at_risk", "cant_lose"),
}
SEGMENT_GRID: dict[tuple[int, int], str] = {
    (r, fm): row[fm - 1] for r, row in _ROWS.items() for fm in range(1, 6)
}


def segment_of(r: int, fm: int) -> str:
    """The named segment of an (R, FM) score pair."""
    try:
        return SEGMENT_GRID[(r, fm)]
    except KeyError:
        raise ValueError(f"scores must be 1..5, got R={r!r} FM={fm!r}") from None


def fm_score(f: int, m: int) -> int:
    """The FM score: mean of F and M rounded half up."""
    return (f + m + 1) // 2


@dataclass(frozen=True, slots=True)
class CustomerRFM:
    """One buyer's raw values, scores and segment."""

    customer_id: int
    recency_days: int
    frequency: int
    monetary_fen: int
    r: int
    f: int
    m: int
    fm: int
    segment: str


@dataclass(frozen=True, slots=True)
class RFMReport:
    """Buyer counts per segment (every segment listed, in SEGMENTS order) and per (R, FM) cell."""

    as_of: datetime
    buyers: int
    segments: dict[str, int]
    grid: list[list[int]]  # grid[r - 1][fm - 1]


# The frequency score of the order count ``f``: the count itself, capped at 5 (see the module's docstring).
_F_SCORE = "CASE WHEN f >= 5 THEN 5 ELSE f END"
# Quintile bounds: quantile_disc(x, k/5) is the ceil(n * k / 5)-th smallest value (SQL PERCENTILE_DISC;
# DECIMAL levels keep that position exact). A value's rank() - 1 is the number of smaller values, so
# 1 + floor(5 * (rank - 1) / n) is 1 plus the number of bounds the value exceeds: the same score as the
# rank formula in the module's docstring, from one selection per column instead of two window sorts.
_LEVELS = "[0.2, 0.4, 0.6, 0.8]::DECIMAL(2, 1)[]"


def _quintile(column: str, bounds: str) -> str:
    return "1 + " + " + ".join(f"CAST({column} > {bounds}[{k}] AS INTEGER)" for k in range(1, 5))


def buyers_sql(org_id: int, as_of: datetime) -> str:
    """DuckDB SQL: one row per buyer as of ``as_of`` (customer_id, last_at, f, m), aggregated from orders."""
    return (
        "SELECT customer_id, max(paid_at) AS last_at, count(*) AS f, sum(amount_fen - refunded_fen) AS m "
        f"FROM orders WHERE org_id = {int(org_id)} AND paid_at <= {sql_timestamp(as_of)} GROUP BY customer_id"
    )


def rfm_sql(org_id: int, as_of: datetime, *, buyers: str | None = None) -> str:
    """DuckDB SQL: one row per buyer with the last payment, frequency, monetary and the three scores.

    ``buyers`` is a query giving what :func:`buyers_sql` gives (the projection's maintained totals, when
    no order is paid after ``as_of``); then the text does not depend on ``as_of``, so a projection can
    remember its rows. Rows come in no particular order.
    """
    return (
        f"WITH b AS ({buyers or buyers_sql(org_id, as_of)}), "
        f"q AS (SELECT quantile_disc(last_at, {_LEVELS}) AS qr, quantile_disc(m, {_LEVELS}) AS qm FROM b) "
        f"SELECT customer_id, last_at, f, m, "
        f"{_quintile('last_at', 'qr')} AS r_score, {_F_SCORE} AS f_score, {_quintile('m', 'qm')} AS m_score "
        "FROM b, q"
    )


def customer_rfm(
    engine: AnalyticsEngine, org_id: int, *, as_of: datetime | None = None, buyers: str | None = None
) -> list[CustomerRFM]:
    """RFM values, scores and segment of every buyer of an organization, by customer id."""
    as_of = as_of or utcnow()
    out = []
    for cid, rec, f, m, rs, fs, ms in engine.query(
        f"SELECT customer_id, date_diff('day', last_at, {sql_timestamp(as_of)}), f, m, r_score, f_score, "
        f"m_score FROM ({rfm_sql(org_id, as_of, buyers=buyers)}) ORDER BY customer_id"
    ):
        fm = fm_score(int(fs), int(ms))
        out.append(
            CustomerRFM(
                int(cid), int(rec), int(f), int(m), int(rs), int(fs), int(ms), fm, segment_of(int(rs), fm)
            )
        )
    return out


def rfm_report(
    engine: AnalyticsEngine, org_id: int, *, as_of: datetime | None = None, buyers: str | None = None
) -> RFMReport:
    """Segment counts and the 5x5 R x FM grid of an organization's buyers."""
    as_of = as_of or utcnow()
    sql = (
        f"WITH x AS ({rfm_sql(org_id, as_of, buyers=buyers)}) SELECT r_score, (f_score + m_score + 1) // 2 AS fm, count(*) "
        "FROM x GROUP BY 1, 2"
    )
    grid = [[0] * 5 for _ in range(5)]
    segments = dict.fromkeys(SEGMENTS, 0)
    counted = 0
    for r, fm, k in engine.query(sql):
        grid[int(r) - 1][int(fm) - 1] += int(k)
        segments[segment_of(int(r), int(fm))] += int(k)
        counted += int(k)
    return RFMReport(as_of=as_of, buyers=counted, segments=segments, grid=grid)
