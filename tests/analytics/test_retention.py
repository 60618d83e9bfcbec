"""Retention: our SQL on DuckDB and chdb against ClickHouse's retention() and a pure-Python reference."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siyu.analytics.engines import ChdbEngine, DuckDBEngine
from siyu.analytics.funnels import Step
from siyu.analytics.retention import Period, RetentionQuery, period_of, period_start, run_retention

Engines = tuple[DuckDBEngine, ChdbEngine]
T0 = datetime(2024, 3, 1)  # a Friday: weeks and months both get cut within a few days
TZ = {0: "UTC", 480: "Asia/Shanghai"}


def python_retention(
    events: Sequence[tuple[int, str, datetime]], q: RetentionQuery
) -> dict[tuple[date, object], tuple]:
    """Straightforward reference: {(cohort start, None): (size, retained...)} for events of one org."""
    starts: dict[int, set[int]] = defaultdict(set)
    returns: dict[int, set[int]] = defaultdict(set)
    for cid, etype, when in events:
        p = period_of(q.period, when, q.utc_offset_minutes)
        if etype == q.start.event_type:
            starts[cid].add(p)
        if etype == q.returning.event_type:
            returns[cid].add(p)
    table: dict[int, list[int]] = {}
    for cid, periods in starts.items():
        for c in [min(periods)] if q.first_time else sorted(periods):
            row = table.setdefault(c, [0] * (q.periods + 2))
            row[0] += 1
            for n in range(q.periods + 1):
                hit = any(r - c >= n for r in returns[cid]) if q.on_or_after else (c + n) in returns[cid]
                row[n + 1] += int(hit)
    return {(period_start(q.period, c), None): tuple(v) for c, v in table.items()}


def clickhouse_retention(ch: ChdbEngine, q: RetentionQuery) -> dict[tuple[date, object], tuple]:
    """ClickHouse's own retention() with its own calendar functions, as the independent reference."""
    tz = TZ[q.utc_offset_minutes]
    local = f"toTimeZone(occurred_at, '{tz}')"
    p = {
        Period.day: f"toInt64(toDate({local}))",
        Period.week: f"intDiv(toInt64(toMonday(toDate({local}))) + 3, 7)",
        Period.month: f"toYear({local}) * 12 + toMonth({local}) - 1",
    }[q.period]
    s, r = q.start.event_type, q.returning.event_type
    ev = f"SELECT customer_id AS cid, {p} AS p, event_type = '{s}' AS st, event_type = '{r}' AS rt FROM events WHERE org_id = {q.org_id}"
    if q.first_time:
        co = "SELECT cid, minIf(p, st) AS c FROM ev GROUP BY cid HAVING countIf(st) > 0"
    else:
        co = "SELECT DISTINCT cid, p AS c FROM ev WHERE st"
    op = ">=" if q.on_or_after else "="
    conds = ", ".join(["st AND p = co.c", *(f"rt AND p - co.c {op} {n}" for n in range(q.periods + 1))])
    sql = (
        f"WITH ev AS ({ev}), co AS ({co}) SELECT c, sumForEach(r) FROM ("
        f"SELECT ev.cid, co.c AS c, retention({conds}) AS r FROM ev INNER JOIN co ON ev.cid = co.cid GROUP BY ev.cid, co.c"
        f") GROUP BY c"
    )
    return {(period_start(q.period, int(c)), None): tuple(int(v) for v in r) for c, r in ch.query_native(sql)}


def as_table(result: list) -> dict[tuple[date, object], tuple]:
    """Our result in the references' shape."""
    return {(c.cohort_start, c.breakdown_value): (c.size, *c.retained) for c in result}


event_rows = st.lists(
    st.tuples(st.integers(1, 4), st.sampled_from(["s", "r", "x"]), st.integers(0, 24 * 75)),  # hours after T0
    max_size=30,
)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=event_rows,
    period=st.sampled_from(list(Period)),
    periods=st.integers(0, 4),
    first_time=st.booleans(),
    on_or_after=st.booleans(),
    offset=st.sampled_from([0, 480]),
    same_event=st.booleans(),
)
def test_retention_matches_references(
    engines: Engines,
    load: Callable[..., int],
    events: list,
    period: Period,
    periods: int,
    first_time: bool,
    on_or_after: bool,
    offset: int,
    same_event: bool,
) -> None:
    """Both engines, ClickHouse's retention() and the Python reference agree on every cohort."""
    duck, ch = engines
    rows = [(cid, etype, T0 + timedelta(hours=h)) for cid, etype, h in events]
    org = load([(cid, etype, when, "{}") for cid, etype, when in rows], decoy=False)
    q = RetentionQuery(
        org,
        Step("s"),
        Step("s" if same_event else "r"),
        period=period,
        periods=periods,
        first_time=first_time,
        on_or_after=on_or_after,
        utc_offset_minutes=offset,
    )
    ours = as_table(run_retention(duck, q))
    assert ours == as_table(run_retention(ch, q))
    assert ours == clickhouse_retention(ch, q)
    assert ours == python_retention(rows, q)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=event_rows,
    period=st.sampled_from(list(Period)),
    periods=st.integers(0, 4),
    on_or_after=st.booleans(),
    offset=st.sampled_from([0, 480]),
    start=st.none() | st.integers(0, 24 * 75),
    length=st.none() | st.integers(1, 24 * 40),
)
def test_numpy_cohorts_match_the_sql_in_a_date_range(
    engines: Engines,
    load: Callable[..., int],
    events: list,
    period: Period,
    periods: int,
    on_or_after: bool,
    offset: int,
    start: int | None,
    length: int | None,
) -> None:
    """DuckDB's first-time cohorts without breakdown (counted in numpy) equal the SQL's on chdb, date range included."""
    duck, ch = engines
    org = load([(cid, etype, T0 + timedelta(hours=h), "{}") for cid, etype, h in events], decoy=False)
    date_from = None if start is None else T0 + timedelta(hours=start)
    date_to = None if length is None else T0 + timedelta(hours=(start or 0) + length)
    q = RetentionQuery(
        org,
        Step("s"),
        Step("r"),
        period=period,
        periods=periods,
        on_or_after=on_or_after,
        utc_offset_minutes=offset,
        date_from=date_from,
        date_to=date_to,
    )
    assert as_table(run_retention(duck, q)) == as_table(run_retention(ch, q))


def test_weekly_cohorts_with_breakdown_and_date_range(engines: Engines, load: Callable[..., int]) -> None:
    """Cohorts by ISO week, split by the customer's source, limited to cohorts in the date range."""
    duck, ch = engines
    monday = datetime(2024, 3, 4)
    events = [
        (1, "friend_added", monday, "{}"),
        (1, "order_paid", monday + timedelta(days=8), "{}"),
        (2, "friend_added", monday + timedelta(days=6), "{}"),
        (2, "order_paid", monday + timedelta(days=21), "{}"),
        (3, "friend_added", monday + timedelta(days=7), "{}"),
        (3, "order_paid", monday + timedelta(days=7), "{}"),
        (4, "friend_added", monday - timedelta(days=1), "{}"),
        (4, "order_paid", monday + timedelta(days=1), "{}"),
    ]
    org = load(events, customers=[(1, "douyin"), (2, "douyin"), (3, "taobao")])
    base = {
        "org_id": org,
        "start": Step("friend_added"),
        "returning": Step("order_paid"),
        "period": Period.week,
        "periods": 3,
    }
    q = RetentionQuery(**base, date_from=monday, breakdown="source")  # type: ignore[arg-type]
    result = run_retention(duck, q)
    assert result == run_retention(ch, q)
    week1, week2 = date(2024, 3, 4), date(2024, 3, 11)
    assert as_table(result) == {
        (week1, "douyin"): (2, 0, 1, 0, 1),  # customer 1 back in week +1, customer 2 in week +3
        (week2, "taobao"): (1, 1, 0, 0, 0),  # customer 3 returned in the cohort's own week
    }
    q = RetentionQuery(**base, date_from=monday, date_to=monday + timedelta(days=7), on_or_after=True)  # type: ignore[arg-type]
    result = run_retention(duck, q)
    assert result == run_retention(ch, q)
    assert as_table(result) == {(week1, None): (2, 2, 2, 1, 1)}
    assert result[0].rates == (1.0, 1.0, 0.5, 0.5)


def test_local_day_boundaries(engines: Engines, load: Callable[..., int]) -> None:
    """With a +08:00 offset, 20:00 UTC belongs to the next local day."""
    duck, ch = engines
    events = [(1, "s", datetime(2024, 3, 1, 1), "{}"), (1, "r", datetime(2024, 3, 1, 20), "{}")]
    org = load(events)
    for offset, expected in [
        (0, {(date(2024, 3, 1), None): (1, 1, 0)}),
        (480, {(date(2024, 3, 1), None): (1, 0, 1)}),
    ]:
        q = RetentionQuery(org, Step("s"), Step("r"), period=Period.day, periods=1, utc_offset_minutes=offset)
        assert as_table(run_retention(duck, q)) == as_table(run_retention(ch, q)) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"period": "year"}, "period must be one of"),
        ({"periods": -1}, "periods must be"),
        ({"utc_offset_minutes": 100_000}, "utc_offset_minutes"),
        ({"breakdown": "mobile"}, "breakdown"),
        ({"start": "friend_added"}, "Step instances"),
    ],
)
def test_bad_queries_are_rejected_with_a_clear_message(kwargs: dict, message: str) -> None:
    """Each invalid field is named in the error."""
    args: dict = {"org_id": 1, "start": Step("s"), "returning": Step("r"), **kwargs}
    with pytest.raises(ValueError, match=message):
        RetentionQuery(**args)
