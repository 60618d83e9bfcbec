"""Ordered conversion funnels with ClickHouse ``windowFunnel`` semantics, in SQL that runs on DuckDB and ClickHouse.

Semantics (matched against ``windowFunnel(window, mode)(t, cond1, ..., condN)`` in tests):

* Input rows (within the optional date range): under ``strict_order``, every event of the customer,
  as ClickHouse's ``windowFunnel(window)(..., 'strict_order')`` over a user's events: any row that
  matches no step (another type, or a step's type whose property filter failed) is an "other
  event" that stops the chain (view, home, cart is one step of view -> cart, not two). The other
  modes never look at unmatched rows, so they read only the events of the steps' types (the same
  levels, far fewer rows). A row may match several steps.
* ClickHouse turns every (row, matching step) into an entry ``(timestamp, step)`` and sorts the
  entries by timestamp, then step number, so equal timestamps carry no row order: at one instant
  step 1 comes before step 2, and an unmatched row (step "0") before both.
* Step 1 (re)starts a chain at its time; step k extends the latest-starting chain that has reached
  step k-1 if ``t <= start + window`` (inclusive). The level of a customer is the highest step
  reached. Modes (combinable): ``strict_increase`` also needs ``t`` > the time of the latest
  step-(k-1) match; ``strict_deduplication`` stops at the first step-k entry (k >= 2) when step k
  was already matched; ``strict_order`` stops, once a step 1 has been seen, at an unmatched row or
  at a step-k entry whose step k-1 has not been reached. Stopping keeps the level reached so far.

How the SQL does it without arrays or ``windowFunnel`` (two methods, see ``customer_levels_sql``):

* "chain" (default mode and ``strict_increase``, the common case): a step-k entry matches exactly
  when the latest matched step-(k-1) entry at or before it started its chain at most ``window``
  earlier. Chain starts only grow over time, so that latest entry carries the latest start and an
  ``ASOF JOIN`` (identical syntax in DuckDB and ClickHouse) finds it. Each step reads only its own
  rows, and only for customers who matched the previous step, so later steps touch few rows.
* "passes" (every mode; the strict stops need every entry in order): rows are first collapsed per
  (customer, timestamp), which is exactly ClickHouse's view of ties. The "start of the best chain
  reaching step k-1 at or before now" is a running ``max`` window; one window pass per step over
  all entries computes who matches step k. The stops of the strict modes are the earliest
  "offending" entry, found with running counts, and the level is the number of steps first
  matched before it.

Time between steps: for each customer and step k >= 2, the time from the step-(k-1) match that the
first step-k match extended (the latest step-(k-1) match of the best chain) to that step-k match;
the result reports the median over customers (exact, interpolated).

On DuckDB, a funnel without breakdown and without the strict stops (what the console and most API
calls ask for) runs the same chain method over numpy arrays instead (``chain_counts``): one scan
fetches every row of the steps' types, each step's rows are sorted as one integer key per row
(customer and time packed together, see ``pack_keys``), and each step's ASOF match is a binary
search over the previous step's matches. DuckDB's ASOF joins were most of the funnel's time
(290 of 490 ms CPU for a four-step funnel over 700,000 events); the SQL stays the reference, run on
ClickHouse and by the tests, which hold both to the same results.

Breakdown: by a column of the ``customers`` dimension table (first-touch values the projection
stores there), not by a per-event value; customers missing from the table fall under ``None``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlglot import exp

from siyu.analytics.engines import AnalyticsEngine, DuckDBEngine, to_clickhouse
from siyu.analytics.schema import BREAKDOWN_COLUMNS

MAX_STEPS = 32  # windowFunnel's own limit
_PROPERTY_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_NO_STOP = 1 << 62  # larger than any encoded position
_POS_SCALE = 128  # position = t_us * 128 + 2 * step + copy; step <= 32 keeps 2*step+copy < 128


class FunnelMode(enum.StrEnum):
    """The windowFunnel options we implement (combinable)."""

    strict_order = "strict_order"
    strict_deduplication = "strict_deduplication"
    strict_increase = "strict_increase"


@dataclass(frozen=True, slots=True)
class Step:
    """One funnel step: an event type plus optional equality filters on string JSON properties."""

    event_type: str
    properties: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.event_type, str) or not self.event_type:
            raise ValueError("step event_type must be a non-empty string")
        for key, value in self.properties.items():
            if not isinstance(key, str) or not _PROPERTY_KEY.match(key):
                raise ValueError(f"step property key {key!r} must match {_PROPERTY_KEY.pattern}")
            # Missing keys read as NULL in DuckDB but '' in ClickHouse, and ClickHouse reads
            # non-string JSON values as ''; non-empty strings compare the same on both.
            if not isinstance(value, str) or not value:
                raise ValueError(
                    f"step property {key!r} must be compared with a non-empty string, got {value!r}"
                )

    def condition_sql(self) -> str:
        """The DuckDB boolean expression selecting this step's events."""
        parts = [f"event_type = {sql_string(self.event_type)}"]
        for key, value in sorted(self.properties.items()):
            parts.append(f"json_extract_string(properties, {sql_string('$.' + key)}) = {sql_string(value)}")
        return " AND ".join(parts)


@dataclass(frozen=True, slots=True)
class FunnelQuery:
    """A funnel over one organization's events."""

    org_id: int
    steps: Sequence[Step]
    window: timedelta = timedelta(days=14)
    modes: frozenset[FunnelMode] = frozenset()
    date_from: datetime | None = None  # inclusive, UTC
    date_to: datetime | None = None  # exclusive, UTC
    breakdown: str | None = None  # a column of `customers`

    def __post_init__(self) -> None:
        if not isinstance(self.org_id, int) or isinstance(self.org_id, bool):
            raise ValueError(f"org_id must be an integer, got {self.org_id!r}")
        steps = tuple(self.steps)
        if not 1 <= len(steps) <= MAX_STEPS:
            raise ValueError(f"a funnel needs 1 to {MAX_STEPS} steps, got {len(steps)}")
        if not all(isinstance(s, Step) for s in steps):
            raise ValueError("steps must be Step instances")
        object.__setattr__(self, "steps", steps)
        if self.window <= timedelta(0):
            raise ValueError(f"window must be positive, got {self.window}")
        object.__setattr__(self, "modes", parse_modes(self.modes))
        if self.breakdown is not None and self.breakdown not in BREAKDOWN_COLUMNS:
            raise ValueError(f"breakdown {self.breakdown!r} is not one of {sorted(BREAKDOWN_COLUMNS)}")
        for name in ("date_from", "date_to"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is not None and value.utcoffset() is None:
                raise ValueError(f"{name} has a broken tzinfo")
        if self.date_from and self.date_to and naive_utc(self.date_from) >= naive_utc(self.date_to):
            raise ValueError("date_from must be before date_to")

    @property
    def window_us(self) -> int:
        """The conversion window in microseconds (the unit of the SQL's timestamps)."""
        return self.window // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class FunnelStep:
    """How many customers reached a step, the conversion into it and the median time to it."""

    step: int  # 1-based
    event_type: str
    count: int
    conversion_from_start: float | None  # count / count at step 1
    conversion_from_previous: float | None
    median_seconds_from_previous: float | None


@dataclass(frozen=True, slots=True)
class FunnelResult:
    """One funnel, for all customers or for one breakdown value."""

    breakdown_value: Any
    steps: tuple[FunnelStep, ...]


def parse_modes(modes: str | Iterable[str | FunnelMode] | None) -> frozenset[FunnelMode]:
    """Normalise a mode spec ('default', one name, or several) to a set of FunnelMode."""
    if modes is None:
        return frozenset()
    names = [modes] if isinstance(modes, str) else list(modes)
    out: set[FunnelMode] = set()
    for name in names:
        if name == "default":
            continue
        try:
            out.add(FunnelMode(name))
        except ValueError:
            allowed = ["default", *(m.value for m in FunnelMode)]
            raise ValueError(f"unknown funnel mode {name!r}; expected one of {allowed}") from None
    return frozenset(out)


def sql_string(value: str) -> str:
    """A DuckDB string literal, quoted and escaped."""
    return exp.Literal.string(value).sql(dialect="duckdb")


def naive_utc(value: datetime) -> datetime:
    """The same instant as a naive UTC datetime (naive input is taken to be UTC already)."""
    if value.tzinfo is None:
        return value
    return (value - value.utcoffset()).replace(tzinfo=None)  # type: ignore[operator]


def sql_timestamp(value: datetime) -> str:
    """A DuckDB TIMESTAMP literal (naive UTC, microseconds) for a datetime."""
    return f"TIMESTAMP '{naive_utc(value).isoformat(sep=' ', timespec='microseconds')}'"


def _event_filter(q: FunnelQuery) -> str:
    types = ", ".join(sql_string(t) for t in sorted({s.event_type for s in q.steps}))
    where = [f"org_id = {int(q.org_id)}", f"event_type IN ({types})"]
    if q.date_from is not None:
        where.append(f"occurred_at >= {sql_timestamp(q.date_from)}")
    if q.date_to is not None:
        where.append(f"occurred_at < {sql_timestamp(q.date_to)}")
    return " AND ".join(where)


def _input_filter(q: FunnelQuery) -> str:
    """The rows windowFunnel sees: all of a customer's events for strict_order, else the steps' types."""
    return _scope_filter(q) if FunnelMode.strict_order in q.modes else _event_filter(q)


def customer_levels_sql(q: FunnelQuery, method: str = "auto") -> str:
    """DuckDB SQL: one row per customer with an input row: cid, level, f1..fN (first match time, us), p2..pN.

    Under strict_order the input is every event of the range (see the module docstring), so customers
    with no step at all appear with level 0, as they do in windowFunnel; the funnel counts levels >= 1.

    ``pk`` is the time of the step-(k-1) match that the first step-k match extended. ``method``:
    "chain" (ASOF joins; default and strict_increase only), "passes" (window passes; every mode)
    or "auto" (chain when the modes allow it).
    """
    if method not in ("auto", "chain", "passes"):
        raise ValueError(f"method must be 'auto', 'chain' or 'passes', got {method!r}")
    if method == "chain" and not _chain_applies(q):
        raise ValueError("the chain method only handles the default mode and strict_increase")
    if method == "chain" or (method == "auto" and _chain_applies(q)):
        return chain_levels_sql(q)
    return passes_levels_sql(q)


def _chain_applies(q: FunnelQuery) -> bool:
    return not (q.modes & {FunnelMode.strict_order, FunnelMode.strict_deduplication})


def _scope_filter(q: FunnelQuery) -> str:
    where = [f"org_id = {int(q.org_id)}"]
    if q.date_from is not None:
        where.append(f"occurred_at >= {sql_timestamp(q.date_from)}")
    if q.date_to is not None:
        where.append(f"occurred_at < {sql_timestamp(q.date_to)}")
    return " AND ".join(where)


def chain_levels_sql(q: FunnelQuery, *, include_unreached: bool = True) -> str:
    """DuckDB SQL for :func:`customer_levels_sql` without the strict stops, one ASOF join per step.

    Only the stops of strict_order / strict_deduplication need every entry in order; without them
    a step-k entry matches exactly when the latest matched step-(k-1) entry at or before it (ties
    included: a step sorts before the next one at the same instant) started its chain at most
    ``window`` earlier (and, under strict_increase, is strictly earlier). Chain starts only grow
    over time, so that latest entry also carries the latest start, and an ASOF join finds it.
    Each step's rows are read with that step's own filter, and only for customers who matched the
    previous step, so each join sorts just the rows that can still matter instead of all of them.
    ``include_unreached`` adds level-0 rows for customers with entries but no step-1 match (what
    windowFunnel reports); the funnel itself does not need them.
    """
    n = len(q.steps)
    ctes = _chain_ctes(q)
    ctes.append("a1 AS (SELECT cid, min(t) AS f FROM e1 GROUP BY cid)")
    level = (
        "CASE " + " ".join(f"WHEN a{k}.cid IS NOT NULL THEN {k}" for k in range(n, 1, -1)) + " ELSE 1 END"
        if n > 1
        else "1"
    )
    cols = ["a1.cid AS cid", f"{level} AS level", "a1.f AS f1"]
    cols += [f"a{k}.f AS f{k}" for k in range(2, n + 1)] + [f"a{k}.p AS p{k}" for k in range(2, n + 1)]
    joins = "".join(f" LEFT JOIN a{k} ON a{k}.cid = a1.cid" for k in range(2, n + 1))
    sql = "WITH " + ",\n".join(ctes) + f"\nSELECT {', '.join(cols)} FROM a1{joins}"
    if include_unreached:
        nulls = ", ".join(["CAST(NULL AS BIGINT)"] * (2 * n - 1))
        sql += (
            f"\nUNION ALL SELECT DISTINCT customer_id AS cid, 0 AS level, {nulls} FROM events "
            f"WHERE {_event_filter(q)} AND customer_id NOT IN (SELECT cid FROM e1)"
        )
    return sql


def _chain_ctes(q: FunnelQuery) -> list[str]:
    """CTEs e<k> (step-k rows), h<k> (step-k matches) and a<k> (per customer: first match f, its p), k >= 2."""
    n = len(q.steps)
    w = q.window_us
    increase = FunnelMode.strict_increase in q.modes
    scope = _scope_filter(q)
    ctes = [
        f"e{k} AS (SELECT customer_id AS cid, epoch_us(occurred_at) AS t FROM events WHERE {scope} AND {s.condition_sql()})"
        for k, s in enumerate(q.steps, 1)
    ]
    # h<k>: the step-k matches with their chain start s and the step-(k-1) match they extend (p).
    ctes.append("h1 AS (SELECT cid, t, t AS s FROM e1)")
    for k in range(2, n + 1):
        match = f"b.t <= a.s + {w}" + (" AND b.t > a.t" if increase else "")
        ctes.append(
            f"h{k} AS (SELECT b.cid AS cid, b.t AS t, a.s AS s, a.t AS p "
            f"FROM (SELECT cid, t FROM e{k} WHERE cid IN (SELECT cid FROM h{k - 1})) AS b "
            f"ASOF JOIN h{k - 1} AS a ON a.cid = b.cid AND a.t <= b.t WHERE {match})"
        )
        # The first match's p is the smallest: the ASOF partner only moves forward in time.
        ctes.append(f"a{k} AS (SELECT cid, min(t) AS f, min(p) AS p FROM h{k} GROUP BY cid)")
    return ctes


def passes_levels_sql(q: FunnelQuery) -> str:
    """DuckDB SQL for :func:`customer_levels_sql` in any mode: one window pass over all entries per step."""
    n = len(q.steps)
    w = q.window_us
    modes = q.modes
    dedup = FunnelMode.strict_deduplication in modes
    order = FunnelMode.strict_order in modes
    increase = FunnelMode.strict_increase in modes
    conds = [s.condition_sql() for s in q.steps]

    flags = [f"CASE WHEN {c} THEN 1 ELSE 0 END AS e{i}" for i, c in enumerate(conds, 1)]
    if order:
        flags.append(f"CASE WHEN {' OR '.join(f'({c})' for c in conds)} THEN 0 ELSE 1 END AS e0")
    base = f"SELECT customer_id AS cid, epoch_us(occurred_at) AS t, {', '.join(flags)} FROM events WHERE {_input_filter(q)}"

    # Collapse ties: ClickHouse sorts entries by (time, step) and forgets which row they came from.
    # Fresh names on every level: ClickHouse resolves a name to a SELECT alias before a column.
    agg = [f"max(e{i}) AS c{i}" for i in range(1, n + 1)]
    if dedup:
        # A second identical (time, step k) entry is a repeat of step k for strict_deduplication.
        agg += [f"sum(e{i}) AS n{i}" for i in range(2, n + 1)]
    if order:
        agg.append("max(e0) AS brk")
    collapse = dedup or order
    if collapse:
        group = f"SELECT cid, t, {', '.join(agg)} FROM base GROUP BY cid, t"
        # One row per instant: ROWS frames see exactly the entries at or before it.
        win = "OVER (PARTITION BY cid ORDER BY t ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    else:
        # Without the strict stops, ties only need "everything at or before this instant", which
        # a RANGE frame gives over the raw rows, saving the GROUP BY.
        group = f"SELECT cid, t, {', '.join(f'e{i} AS c{i}' for i in range(1, n + 1))} FROM base"
        win = "OVER (PARTITION BY cid ORDER BY t RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    ctes = [
        f"base AS ({base})",
        f"g AS ({group})",
        "l1 AS (SELECT *, CASE WHEN c1 = 1 THEN t END AS s1 FROM g)",
    ]
    for k in range(2, n + 1):
        # m: start of the latest-starting chain that reached step k-1 at or before this instant;
        # x: time of the latest step-(k-1) match (the one that chain ends with).
        running = [
            f"max(s{k - 1}) {win} AS m{k - 1}",
            f"max(CASE WHEN s{k - 1} IS NOT NULL THEN t END) {win} AS x{k - 1}",
        ]
        if dedup and k - 1 >= 2:
            running.append(f"count(s{k - 1}) {win} AS a{k - 1}")
        if order and k == 2:
            running.append(f"sum(c1) {win} AS q1")
        match = f"c{k} = 1 AND t <= m{k - 1} + {w}"
        if increase:
            match += f" AND t > x{k - 1}"
        ctes.append(
            f"l{k} AS (SELECT *, CASE WHEN {match} THEN m{k - 1} END AS s{k} "
            f"FROM (SELECT *, {', '.join(running)} FROM l{k - 1}) AS r{k})"
        )
    last = f"l{n}"
    if dedup and n >= 2:
        ctes.append(f"lf AS (SELECT *, count(s{n}) {win} AS a{n} FROM {last})")
        last = "lf"
    if order and n == 1:
        ctes.append(f"lf AS (SELECT *, sum(c1) {win} AS q1 FROM {last})")
        last = "lf"

    # Earliest entry at which a strict mode stops, as an encoded position (time, step, copy).
    stops: list[str] = []
    for k in range(2, n + 1):
        pos = f"t * {_POS_SCALE} + {2 * k}"
        if dedup:
            stops.append(
                f"min(CASE WHEN c{k} = 1 AND a{k} - CASE WHEN s{k} IS NULL THEN 0 ELSE 1 END > 0 THEN {pos} "
                f"WHEN s{k} IS NOT NULL AND n{k} >= 2 THEN {pos} + 1 END)"
            )
        if order:
            stops.append(f"min(CASE WHEN c{k} = 1 AND q1 > 0 AND m{k - 1} IS NULL THEN {pos} END)")
    if order:
        stops.append(f"min(CASE WHEN brk = 1 AND q1 - c1 > 0 THEN t * {_POS_SCALE} END)")
    stop = (
        "least(" + ", ".join(f"coalesce({s}, {_NO_STOP})" for s in stops) + f", {_NO_STOP})"
        if stops
        else str(_NO_STOP)
    )

    firsts = ["min(CASE WHEN c1 = 1 THEN t END) AS f1"]
    for k in range(2, n + 1):
        firsts.append(f"min(CASE WHEN s{k} IS NOT NULL THEN t END) AS f{k}")
        firsts.append(f"min(CASE WHEN s{k} IS NOT NULL THEN x{k - 1} END) AS p{k}")
    ctes.append(f"pc AS (SELECT cid, {stop} AS stop, {', '.join(firsts)} FROM {last} GROUP BY cid)")
    level = " + ".join(
        f"CASE WHEN f{k} IS NOT NULL AND f{k} * {_POS_SCALE} + {2 * k} < stop THEN 1 ELSE 0 END"
        for k in range(1, n + 1)
    )
    cols = (
        ["cid", f"{level} AS level"] + [f"f{k}" for k in range(1, n + 1)] + [f"p{k}" for k in range(2, n + 1)]
    )
    return "WITH " + ",\n".join(ctes) + f"\nSELECT {', '.join(cols)} FROM pc"


def funnel_sql(q: FunnelQuery) -> str:
    """DuckDB SQL: per breakdown value, customers reaching each step and median step-to-step times (us)."""
    n = len(q.steps)
    if q.breakdown is None and _chain_applies(q):
        # Without the strict stops a customer who matched step k matched every earlier step, so
        # each step's count and median come from that step's own rows: no per-customer join.
        parts = ["(SELECT count(DISTINCT cid) AS reached1 FROM e1) AS c1"]
        # ClickHouse's quantile of no rows is nan, not NULL: ask only when there are rows.
        parts += [
            f"(SELECT count(*) AS reached{k}, CASE WHEN count(*) > 0 THEN quantile_cont(f - p, 0.5) END AS median{k} FROM a{k}) AS c{k}"
            for k in range(2, n + 1)
        ]
        cols = [f"reached{k}" for k in range(1, n + 1)] + [f"median{k}" for k in range(2, n + 1)]
        return (
            "WITH "
            + ",\n".join(_chain_ctes(q))
            + f"\nSELECT NULL AS breakdown, {', '.join(cols)} FROM {' CROSS JOIN '.join(parts)}"
        )
    levels = chain_levels_sql(q, include_unreached=False) if _chain_applies(q) else passes_levels_sql(q)
    outs = [f"sum(CASE WHEN level >= {k} THEN 1 ELSE 0 END) AS reached{k}" for k in range(1, n + 1)]
    outs += [
        f"quantile_cont(CASE WHEN level >= {k} THEN f{k} - p{k} END, 0.5) AS median{k}"
        for k in range(2, n + 1)
    ]
    if q.breakdown is None:
        return f"WITH lv AS ({levels}) SELECT NULL AS breakdown, {', '.join(outs)} FROM lv WHERE level >= 1"
    return (
        f"WITH lv AS ({levels}) SELECT d.{q.breakdown} AS breakdown, {', '.join(outs)} FROM lv "
        f"LEFT JOIN customers AS d ON d.org_id = {int(q.org_id)} AND d.customer_id = lv.cid "
        f"WHERE lv.level >= 1 GROUP BY d.{q.breakdown}"
    )


def window_funnel_reference_sql(q: FunnelQuery) -> str:
    """ClickHouse SQL computing each customer's level with windowFunnel itself (tests and benchmarks)."""
    conds = ", ".join(_clickhouse_expr(s.condition_sql()) for s in q.steps)
    params = ", ".join([str(q.window_us), *(f"'{m.value}'" for m in sorted(q.modes))])
    where = _clickhouse_expr(_input_filter(q))
    return (
        f"SELECT customer_id AS cid, windowFunnel({params})(toUInt64(toUnixTimestamp64Micro(occurred_at)), {conds}) AS level "
        f"FROM events WHERE {where} GROUP BY customer_id"
    )


def _clickhouse_expr(duckdb_expr: str) -> str:
    sql = to_clickhouse(f"SELECT 1 FROM events WHERE {duckdb_expr}")
    return sql.split(" WHERE ", 1)[1]


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def chain_counts(engine: DuckDBEngine, q: FunnelQuery) -> tuple[list[int], list[float | None]]:
    """Customers reaching each step and the median microseconds from the previous step (None without any),
    by the chain method of :func:`chain_levels_sql` over numpy arrays; no breakdown, no strict stops.

    Each row is packed into one integer key that orders by (customer, time) (see :func:`pack_keys`), and each
    step's keys are sorted on their own. "The latest step-(k-1) match at or before this row, ties included"
    is then a right-sided binary search of the row's key among the matches' keys. The match found carries
    its chain start ``s`` (starts only grow over time, so the latest match has the latest start) and its
    time ``p``, exactly the ASOF partner.
    """
    if not _chain_applies(q) or q.breakdown is not None:
        raise ValueError(
            "chain_counts handles funnels without breakdown in the default mode or strict_increase"
        )
    n = len(q.steps)
    flags = ", ".join(f"coalesce({s.condition_sql()}, false) AS m{k}" for k, s in enumerate(q.steps, 1))
    cols = engine.query_numpy(
        f"SELECT customer_id AS cid, epoch_us(occurred_at) AS t, {flags} FROM events WHERE {_event_filter(q)}"
    )
    key, shift, times = pack_keys(
        cols["cid"].astype(np.int64, copy=False), cols["t"].astype(np.int64, copy=False)
    )
    # Sorting one integer per row is several times faster than a (customer, time) lexsort, and a
    # step's own rows are all its binary searches need.
    h = np.sort(key[cols["m1"]], kind="stable")
    hs = times(h)  # a step-1 match starts its own chain
    reached = [_distinct_sorted(h >> shift)]
    medians: list[float | None] = []
    for k in range(2, n + 1):
        b = np.sort(key[cols[f"m{k}"]], kind="stable")
        if not len(h) or not len(b):
            h = hs = b[:0]
            reached.append(0)
            medians.append(None)
            continue
        j = np.searchsorted(h, b, side="right") - 1
        a = h[np.maximum(j, 0)]  # rows with j < 0 are masked out below
        s = hs[np.maximum(j, 0)]
        tb, ta = times(b), times(a)
        ok = (j >= 0) & (a >> shift == b >> shift) & (tb <= s + q.window_us)
        if FunnelMode.strict_increase in q.modes:
            ok &= tb > ta
        h, hs, hp, th = b[ok], s[ok], ta[ok], tb[ok]
        if not len(h):
            reached.append(0)
            medians.append(None)
            continue
        c = h >> shift
        starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
        # Per customer: the first match's time and the smallest previous-step time (as the SQL's min(p)).
        firsts = np.minimum.reduceat(th, starts) - np.minimum.reduceat(hp, starts)
        reached.append(len(starts))
        medians.append(float(np.median(firsts)))
    return reached, medians


def pack_keys(cid: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, int, Callable[[np.ndarray], np.ndarray]]:
    """One int64 key per row ordered as (customer, time): ``key >> shift`` orders customers, the low bits
    times; returns the keys, ``shift`` and a function giving the time (us) of keys.

    Offsets from the smallest customer and time fit in 63 bits for any realistic data (100 years of
    microseconds take 52 bits); where they do not, times and then customers are replaced by their
    ranks, which order the same.
    """
    if not len(cid):
        return cid, 0, lambda keys: keys
    t0 = int(t.min())
    t_bits = (int(t.max()) - t0).bit_length()
    c_bits = (int(cid.max()) - int(cid.min())).bit_length()
    ranked: np.ndarray | None = None
    if c_bits + t_bits <= 63:
        low = t - t0
    else:
        ranked, low = np.unique(t, return_inverse=True)
        t_bits = (len(ranked) - 1).bit_length()
    if c_bits + t_bits <= 63:
        high = cid - cid.min()
    else:
        _, high = np.unique(cid, return_inverse=True)
    # In place: at millions of rows every temporary array costs as much as the arithmetic.
    key = high.astype(np.int64, copy=False)
    key <<= t_bits
    key |= low
    mask = (1 << t_bits) - 1
    if ranked is None:
        return key, t_bits, lambda keys: (keys & mask) + t0
    values = ranked
    return key, t_bits, lambda keys: values[keys & mask]


def _distinct_sorted(values: np.ndarray) -> int:
    return int(np.count_nonzero(values[1:] != values[:-1])) + 1 if len(values) else 0


def run_funnel(engine: AnalyticsEngine, q: FunnelQuery) -> list[FunnelResult]:
    """Compute the funnel on an engine; one result per breakdown value (a single one without breakdown)."""
    n = len(q.steps)
    if isinstance(engine, DuckDBEngine) and q.breakdown is None and _chain_applies(q):
        counts, times = chain_counts(engine, q)
        rows: list[tuple[Any, ...]] = [(None, *counts, *times)]
    else:
        rows = engine.query(funnel_sql(q))
    results: list[FunnelResult] = []
    for row in rows:
        value = row[0]
        reached = [int(v or 0) for v in row[1 : 1 + n]]
        medians = [None, *row[1 + n : 1 + n + (n - 1)]]
        steps = tuple(
            FunnelStep(
                step=k,
                event_type=q.steps[k - 1].event_type,
                count=reached[k - 1],
                conversion_from_start=_ratio(reached[k - 1], reached[0]),
                conversion_from_previous=_ratio(reached[k - 1], reached[k - 2])
                if k > 1
                else _ratio(reached[0], reached[0]),
                median_seconds_from_previous=None if medians[k - 1] is None else float(medians[k - 1]) / 1e6,
            )
            for k in range(1, n + 1)
        )
        results.append(FunnelResult(breakdown_value=value, steps=steps))
    if q.breakdown is None and not results:
        results.append(
            FunnelResult(
                None,
                tuple(FunnelStep(k, s.event_type, 0, None, None, None) for k, s in enumerate(q.steps, 1)),
            )
        )
    results.sort(key=lambda r: (r.breakdown_value is not None, str(r.breakdown_value)))
    return results
