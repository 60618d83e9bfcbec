"""Retention cohorts in portable SQL (DuckDB dialect, transpiled to ClickHouse).

A customer enters a cohort in the period (day, ISO week starting Monday, or calendar month, at a
fixed UTC offset) of a *start* event: only their first start event ever (``first_time``) or every
period with a start event (recurring; a customer may then sit in several cohorts). For period
``n = 0..periods`` the result counts cohort members with a *return* event in period cohort+n
(``on``) or in cohort+n or any later period (``on_or_after``). Period 0 is the cohort's own period,
whatever the order of start and return inside it (the same as ClickHouse's ``retention()`` over
period conditions, which the tests use as reference). ``date_from``/``date_to`` select cohorts by
their period; returns are counted whenever they happen. Breakdown is by a column of the
``customers`` dimension table.

On DuckDB, first-time cohorts without breakdown (the console's and most API requests) are counted
in numpy instead (``retention_rows_numpy``): the SQL's hash aggregations over a million customers
were most of the request; the SQL stays the reference, which the tests hold it to.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from siyu.analytics.engines import AnalyticsEngine, DuckDBEngine
from siyu.analytics.funnels import Step, naive_utc, pack_keys
from siyu.analytics.schema import BREAKDOWN_COLUMNS, shift_minutes

_DAY_US = 86_400_000_000
_EPOCH = date(1970, 1, 1)
_EPOCH_MONDAY = date(1969, 12, 29)  # weeks are counted from this Monday
MAX_PERIODS = 366


class Period(enum.StrEnum):
    """Cohort and return period length."""

    day = "day"
    week = "week"
    month = "month"


@dataclass(frozen=True, slots=True)
class RetentionQuery:
    """A retention table over one organization's events."""

    org_id: int
    start: Step
    returning: Step
    period: Period = Period.week
    periods: int = 8  # periods after the cohort's own; the result has periods + 1 columns
    first_time: bool = True  # False: recurring (every period with a start event is a cohort)
    on_or_after: bool = False  # False: returned in period n exactly
    date_from: datetime | None = None  # cohorts whose period contains or follows this instant
    date_to: datetime | None = None  # cohorts whose period starts before this instant
    breakdown: str | None = None
    utc_offset_minutes: int = 0  # period boundaries in local time, e.g. 480 for Asia/Shanghai

    def __post_init__(self) -> None:
        if not isinstance(self.org_id, int) or isinstance(self.org_id, bool):
            raise ValueError(f"org_id must be an integer, got {self.org_id!r}")
        if not isinstance(self.start, Step) or not isinstance(self.returning, Step):
            raise ValueError("start and returning must be Step instances")
        try:
            object.__setattr__(self, "period", Period(self.period))
        except ValueError:
            raise ValueError(
                f"period must be one of {[p.value for p in Period]}, got {self.period!r}"
            ) from None
        if not isinstance(self.periods, int) or not 0 <= self.periods <= MAX_PERIODS:
            raise ValueError(f"periods must be an integer in 0..{MAX_PERIODS}, got {self.periods!r}")
        if not isinstance(self.utc_offset_minutes, int) or abs(self.utc_offset_minutes) > 14 * 60:
            raise ValueError(
                f"utc_offset_minutes must be an integer within ±840, got {self.utc_offset_minutes!r}"
            )
        if self.breakdown is not None and self.breakdown not in BREAKDOWN_COLUMNS:
            raise ValueError(f"breakdown {self.breakdown!r} is not one of {sorted(BREAKDOWN_COLUMNS)}")
        if self.date_from and self.date_to and naive_utc(self.date_from) >= naive_utc(self.date_to):
            raise ValueError("date_from must be before date_to")


@dataclass(frozen=True, slots=True)
class RetentionCohort:
    """One cohort row: its first day, breakdown value, size and retained counts for n = 0..periods."""

    cohort_start: date
    breakdown_value: Any
    size: int
    retained: tuple[int, ...]

    @property
    def rates(self) -> tuple[float, ...]:
        """retained[n] / size for each period."""
        return tuple(r / self.size for r in self.retained) if self.size else tuple(0.0 for _ in self.retained)


def period_index_sql(period: Period, utc_offset_minutes: int = 0, column: str = "occurred_at") -> str:
    """DuckDB expression numbering the period that contains `column` (integers, increasing with time)."""
    off = int(utc_offset_minutes) * 60_000_000
    if period is Period.day:
        return f"(epoch_us({column}) + {off}) // {_DAY_US}"
    if period is Period.week:
        # 1970-01-01 was a Thursday: +3 days counts weeks from Monday 1969-12-29.
        return f"((epoch_us({column}) + {off}) // {_DAY_US} + 3) // 7"
    local = shift_minutes(column, utc_offset_minutes)
    return f"(extract(year FROM {local}) * 12 + extract(month FROM {local}) - 1)"


def period_start(period: Period, index: int) -> date:
    """The local date on which period number `index` starts."""
    if period is Period.day:
        return _EPOCH + timedelta(days=index)
    if period is Period.week:
        return _EPOCH_MONDAY + timedelta(weeks=index)
    return date(index // 12, index % 12 + 1, 1)


def period_of(period: Period, when: datetime, utc_offset_minutes: int = 0) -> int:
    """The period number containing an instant (Python twin of period_index_sql)."""
    local = naive_utc(when) + timedelta(minutes=utc_offset_minutes)
    days = (local.date() - _EPOCH).days
    if period is Period.day:
        return days
    if period is Period.week:
        return (days + 3) // 7
    return local.year * 12 + local.month - 1


def retention_sql(q: RetentionQuery) -> str:
    """DuckDB SQL: rows (cohort index, breakdown value, n, customers); n = -1 is the cohort size.

    With ``on_or_after`` a row counts the members whose last return is in period n (n may exceed
    ``periods``); run_retention turns these into cumulative counts.
    """
    p = period_index_sql(q.period, q.utc_offset_minutes)
    start, ret = q.start.condition_sql(), q.returning.condition_sql()
    ev = (
        f"SELECT customer_id AS cid, {p} AS p, CASE WHEN {start} THEN 1 ELSE 0 END AS st, "
        f"CASE WHEN {ret} THEN 1 ELSE 0 END AS rt FROM events WHERE org_id = {int(q.org_id)} AND (({start}) OR ({ret}))"
    )
    if q.first_time:
        cohorts = "SELECT cid, min(p) AS c FROM ev WHERE st = 1 GROUP BY cid"
    else:
        cohorts = "SELECT DISTINCT cid, p AS c FROM ev WHERE st = 1"
    lo, hi = _cohort_bounds(q)
    bounds = ([] if lo is None else [f"c >= {lo}"]) + ([] if hi is None else [f"c < {hi}"])
    if bounds:
        cohorts = f"SELECT cid, c FROM ({cohorts}) AS c0 WHERE {' AND '.join(bounds)}"
    if q.breakdown is None:
        members = "SELECT cid, c, NULL AS b FROM cohorts"
    else:
        members = (
            f"SELECT cohorts.cid AS cid, cohorts.c AS c, d.{q.breakdown} AS b FROM cohorts "
            f"LEFT JOIN customers AS d ON d.org_id = {int(q.org_id)} AND d.customer_id = cohorts.cid"
        )
    # (cid, cohort) and (cid, return period) are both unique, so "on" is a plain count per offset;
    # "on or after" needs each member's last return, counted cumulatively in Python.
    if q.on_or_after:
        hits = (
            "SELECT c, b, n, count(*) AS k FROM (SELECT m.cid, m.c AS c, m.b AS b, max(r.p) - m.c AS n "
            "FROM m JOIN rets AS r ON r.cid = m.cid GROUP BY m.cid, m.c, m.b) AS last WHERE n >= 0 GROUP BY c, b, n"
        )
    else:
        hits = (
            "SELECT m.c AS c, m.b AS b, r.p - m.c AS n, count(*) AS k FROM m JOIN rets AS r ON r.cid = m.cid "
            f"WHERE r.p - m.c BETWEEN 0 AND {q.periods} GROUP BY m.c, m.b, r.p - m.c"
        )
    return (
        f"WITH ev AS ({ev}), cohorts AS ({cohorts}), rets AS (SELECT DISTINCT cid, p FROM ev WHERE rt = 1), "
        f"m AS ({members}) "
        f"SELECT c, b, -1 AS n, count(*) AS k FROM m GROUP BY c, b UNION ALL {hits}"
    )


def _cohort_bounds(q: RetentionQuery) -> tuple[int | None, int | None]:
    """The first cohort period in range and the first one past it (None: unbounded)."""
    # A cohort period that contains date_from counts; so compare period numbers, not instants.
    lo = None if q.date_from is None else period_of(q.period, q.date_from, q.utc_offset_minutes)
    hi = (
        None
        if q.date_to is None
        else period_of(q.period, q.date_to - timedelta(microseconds=1), q.utc_offset_minutes) + 1
    )
    return lo, hi


def retention_rows_numpy(engine: DuckDBEngine, q: RetentionQuery) -> list[tuple[int, None, int, int]]:
    """The rows of :func:`retention_sql` for first-time cohorts without breakdown, counted in numpy.

    DuckDB's hash aggregation over a million customers (first start per customer, distinct return
    periods, their join) was most of a retention request; here one scan fetches (customer, period,
    is start, is return) and sorted packed keys do the grouping: a customer's cohort is the smallest
    period among their starts, their returns are the distinct return periods, matched by binary search.
    """
    if not q.first_time or q.breakdown is not None:
        raise ValueError("retention_rows_numpy handles first-time cohorts without breakdown")
    start, ret = q.start.condition_sql(), q.returning.condition_sql()
    cols = engine.query_numpy(
        f"SELECT customer_id AS cid, {period_index_sql(q.period, q.utc_offset_minutes)} AS p, "
        f"coalesce({start}, false) AS st, coalesce({ret}, false) AS rt FROM events "
        f"WHERE org_id = {int(q.org_id)} AND (({start}) OR ({ret}))"
    )
    key, shift, period = pack_keys(
        cols["cid"].astype(np.int64, copy=False), cols["p"].astype(np.int64, copy=False)
    )
    starts = np.sort(key[cols["st"]], kind="stable")
    first = np.r_[True, starts[1:] >> shift != starts[:-1] >> shift] if len(starts) else starts > 0
    members, cohort = starts[first] >> shift, period(starts[first])  # by customer
    lo, hi = _cohort_bounds(q)
    keep = np.ones(len(members), dtype=bool)
    if lo is not None:
        keep &= cohort >= lo
    if hi is not None:
        keep &= cohort < hi
    members, cohort = members[keep], cohort[keep]
    if not len(members):
        return []
    sizes = _counts(cohort)
    rets = np.sort(key[cols["rt"]], kind="stable")
    rets = rets[np.r_[True, rets[1:] != rets[:-1]]] if len(rets) else rets  # distinct (customer, period)
    if q.on_or_after:
        # A member's last return period, wherever it falls; n < 0 (all returns before the cohort) is dropped.
        last = np.r_[rets[1:] >> shift != rets[:-1] >> shift, True] if len(rets) else rets > 0
        rets = rets[last]
    who = rets >> shift
    at = np.minimum(np.searchsorted(members, who), len(members) - 1)
    hit = members[at] == who
    c = cohort[at][hit]
    n = period(rets[hit]) - c
    ok = n >= 0 if q.on_or_after else (n >= 0) & (n <= q.periods)
    c, n = c[ok], n[ok]
    # One code per (cohort, n): n < width, so the code orders and separates the pairs.
    width = int(n.max()) + 1 if len(n) else 1
    low = int(cohort.min())
    codes, counts = _counts((c - low) * width + n)
    rows = [(int(co), None, -1, int(k)) for co, k in zip(*sizes, strict=True)]
    rows += [
        (int(code // width) + low, None, int(code % width), int(k))
        for code, k in zip(codes.tolist(), counts.tolist(), strict=True)
    ]
    return rows


def _counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values, ascending, and how often each occurs (a sort: np.unique hashes, slower here)."""
    v = np.sort(values, kind="stable")
    edges = np.flatnonzero(np.r_[True, v[1:] != v[:-1]]) if len(v) else np.zeros(0, dtype=np.int64)
    return v[edges], np.diff(np.r_[edges, len(v)])


def run_retention(engine: AnalyticsEngine, q: RetentionQuery) -> list[RetentionCohort]:
    """Compute the retention table on an engine, ordered by cohort then breakdown value."""
    cells: dict[tuple[int, Any], list[int]] = {}
    if isinstance(engine, DuckDBEngine) and q.first_time and q.breakdown is None:
        rows: list[tuple[Any, ...]] = list(retention_rows_numpy(engine, q))
    else:
        rows = engine.query(retention_sql(q))
    for c, b, n, k in rows:
        row = cells.setdefault((int(c), b), [0] * (q.periods + 2))
        n, k = int(n), int(k)
        if n < 0:
            row[0] = k
        elif q.on_or_after:
            # Last return in period n: returned on or after every period 0..n.
            for i in range(min(n, q.periods) + 1):
                row[i + 1] += k
        else:
            row[n + 1] += k
    out = [
        RetentionCohort(period_start(q.period, c), b, size=row[0], retained=tuple(row[1:]))
        for (c, b), row in cells.items()
    ]
    out.sort(key=lambda c: (c.cohort_start, c.breakdown_value is not None, str(c.breakdown_value)))
    return out
