"""Funnels: our SQL on DuckDB and on chdb against ClickHouse's own windowFunnel and a Python port of it."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siyu.analytics.engines import ChdbEngine, DuckDBEngine
from siyu.analytics.funnels import (
    FunnelMode,
    FunnelQuery,
    Step,
    customer_levels_sql,
    pack_keys,
    parse_modes,
    run_funnel,
    window_funnel_reference_sql,
)

Engines = tuple[DuckDBEngine, ChdbEngine]
T0 = datetime(2024, 3, 1)


def _matches(step: Step, event_type: str, props: str) -> bool:
    values = json.loads(props)
    return step.event_type == event_type and all(values.get(k) == v for k, v in step.properties.items())


def python_window_funnel(
    rows: Sequence[tuple[float, str, str]], q: FunnelQuery
) -> tuple[int, list[float | None]]:
    """A line-by-line port of ClickHouse's getEventLevelNonStrictOnce (level, time into each step).

    rows: (seconds, event_type, properties) of one customer: every event under strict_order, else
    only those of the steps' types.
    The times list holds, for step k >= 2, seconds from the step-(k-1) match extended to the first
    step-k match (what our funnel's median is computed over).
    """
    n = len(q.steps)
    order = FunnelMode.strict_order in q.modes
    dedup = FunnelMode.strict_deduplication in q.modes
    increase = FunnelMode.strict_increase in q.modes
    window = q.window.total_seconds()
    entries: list[tuple[float, int]] = []
    for t, etype, props in rows:
        matched = [k for k in range(1, n + 1) if _matches(q.steps[k - 1], etype, props)]
        entries += [(t, k) for k in matched]
        if order and not matched:
            entries.append((t, 0))
    times: list[float | None] = [None] * n
    if not entries:
        return 0, times
    if not order and n == 1:
        return 1, times
    entries.sort()
    ts: list[tuple[float, float] | None] = [None] * n

    def level() -> int:
        return max((k + 1 for k in range(n) if ts[k] is not None), default=0)

    first_event = False
    for t, cond in entries:
        idx = cond - 1
        if order and idx == -1:
            if first_event:
                break
            continue
        if idx == 0:
            ts[0] = (t, t)
            first_event = True
        elif (dedup and ts[idx] is not None) or (order and first_event and ts[idx - 1] is None):
            return level(), times
        elif ts[idx - 1] is not None:
            first, last = ts[idx - 1]  # type: ignore[misc]
            ok = t <= first + window and (not increase or last < t)
            if ok:
                if ts[idx] is None:
                    times[idx] = t - last
                ts[idx] = (first, t)
                if idx + 1 == n:
                    return n, times
    return level(), times


# -- property-based cross-check against windowFunnel ------------------------------------------------

PROPS = ["{}", '{"p": "1"}', '{"p": "2"}']
event_rows = st.lists(
    st.tuples(
        st.integers(1, 3), st.sampled_from(["a", "b", "c", "x"]), st.integers(0, 12), st.sampled_from(PROPS)
    ),
    max_size=24,
)
steps_strategy = st.lists(
    st.builds(
        lambda t, p: Step(t, {"p": p} if p else {}),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from([None, None, "1", "2"]),
    ),
    min_size=1,
    max_size=4,
)
modes_strategy = st.sets(st.sampled_from(list(FunnelMode)))


@pytest.mark.slow
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=event_rows, steps=steps_strategy, window=st.integers(1, 8), modes=modes_strategy)
def test_levels_match_window_funnel(
    engines: Engines, load: Callable[..., int], events: list, steps: list[Step], window: int, modes: set
) -> None:
    """Every mode (and mix of modes) gives windowFunnel's level for every customer, on both engines."""
    duck, ch = engines
    org = load(events, decoy=False)
    q = FunnelQuery(org, steps, window=timedelta(seconds=window), modes=frozenset(modes))
    reference = dict(ch.query_native(window_funnel_reference_sql(q)))
    on_duck = {row[0]: row[1] for row in duck.query(customer_levels_sql(q))}
    on_ch = {row[0]: row[1] for row in ch.query(customer_levels_sql(q))}

    # windowFunnel sees every event of the input; strict_order's input is all of a customer's events
    # (any other event interrupts the chain), the other modes' only the steps' types.
    def seen(event_type: str) -> bool:
        return FunnelMode.strict_order in modes or event_type in {s.event_type for s in steps}

    port = {}
    for cid in {e[0] for e in events if seen(e[1])}:
        rows = [(float(t), et, p) for c, et, t, p in events if c == cid and seen(et)]
        port[cid] = python_window_funnel(rows, q)[0]
    assert on_duck == reference
    assert on_ch == reference
    assert port == reference
    # The window-pass method (the only one for the strict stops) must stay exact in every mode too.
    passes = sorted(duck.query(customer_levels_sql(q, method="passes")), key=repr)
    assert {row[0]: row[1] for row in passes} == reference
    assert {row[0]: row[1] for row in ch.query(customer_levels_sql(q, method="passes"))} == reference
    if not modes & {FunnelMode.strict_order, FunnelMode.strict_deduplication}:
        # Where the ASOF-join method applies it must also agree on first-match and previous-step
        # times (the medians' inputs), not only on levels.
        chain = sorted(duck.query(customer_levels_sql(q, method="chain")), key=repr)
        assert chain == passes
        assert sorted(ch.query(customer_levels_sql(q, method="chain")), key=repr) == passes


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=event_rows, steps=steps_strategy, window=st.integers(1, 8), increase=st.booleans())
def test_chain_method_matches_window_funnel(
    engines: Engines, load: Callable[..., int], events: list, steps: list[Step], window: int, increase: bool
) -> None:
    """The ASOF-join method (what funnels use without strict stops) gives windowFunnel's levels on both engines."""
    duck, ch = engines
    org = load(events, decoy=False)
    modes = frozenset({FunnelMode.strict_increase}) if increase else frozenset()
    q = FunnelQuery(org, steps, window=timedelta(seconds=window), modes=modes)
    reference = dict(ch.query_native(window_funnel_reference_sql(q)))
    chain = sorted(duck.query(customer_levels_sql(q, method="chain")), key=repr)
    assert {row[0]: row[1] for row in chain} == reference
    assert sorted(ch.query(customer_levels_sql(q, method="chain")), key=repr) == chain
    assert sorted(duck.query(customer_levels_sql(q, method="passes")), key=repr) == chain


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=event_rows,
    steps=steps_strategy,
    window=st.integers(1, 8),
    increase=st.booleans(),
    far=st.booleans(),
)
def test_numpy_funnel_matches_the_sql_funnel(
    engines: Engines,
    load: Callable[..., int],
    events: list,
    steps: list[Step],
    window: int,
    increase: bool,
    far: bool,
) -> None:
    """DuckDB's funnel without breakdown (numpy over packed keys) gives the SQL funnel's counts and medians
    on chdb, also when customer ids and times lie too far apart to pack as offsets into 64 bits."""
    duck, ch = engines
    if far:
        # Near the ends of the id range and of ClickHouse's time range: the keys rank times and customers.
        first = steps[0].event_type
        events = [*events, (2**62, first, datetime(1901, 1, 1), "{}"), (1, first, datetime(2290, 1, 1), "{}")]
    org = load(events, decoy=False)
    modes = frozenset({FunnelMode.strict_increase}) if increase else frozenset()
    q = FunnelQuery(org, steps, window=timedelta(seconds=window), modes=modes)
    assert run_funnel(duck, q) == run_funnel(ch, q)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from([-(2**62), -1, 0, 1, 2, 7, 2**40, 2**62]),
            st.integers(-(2**62), 2**62) | st.integers(0, 50),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_packed_keys_order_by_customer_then_time(rows: list[tuple[int, int]]) -> None:
    """Keys sort rows as (customer, time), tell customers apart by their high bits and give the times back,
    whether offsets fit in 64 bits or times and customers have to be ranked."""
    cid = np.array([c for c, _ in rows], dtype=np.int64)
    t = np.array([x for _, x in rows], dtype=np.int64)
    key, shift, times = pack_keys(cid, t)
    order = np.argsort(key, kind="stable")
    assert sorted(rows) == [rows[i] for i in order]
    assert times(key).tolist() == t.tolist()
    high = key >> shift
    assert all((high[i] == high[j]) == (cid[i] == cid[j]) for i in range(len(rows)) for j in range(len(rows)))


# -- hand-made cases that pin down ties and the strict modes ----------------------------------------


def _levels(
    engines: Engines, load: Callable[..., int], events: list, steps: list[Step], **kw: object
) -> dict:
    duck, ch = engines
    q = FunnelQuery(load(events), steps, **kw)  # type: ignore[arg-type]
    reference = dict(ch.query_native(window_funnel_reference_sql(q)))
    ours = {r[0]: r[1] for r in duck.query(customer_levels_sql(q))}
    assert ours == {r[0]: r[1] for r in ch.query(customer_levels_sql(q))}
    assert ours == reference
    return ours


ABC = [Step("a"), Step("b"), Step("c")]


def test_ties_order_by_step_number(engines: Engines, load: Callable[..., int]) -> None:
    """At one instant step 1 precedes step 2, whatever the row order; strict_increase refuses ties."""
    events = [(1, "b", 0, "{}"), (1, "a", 0, "{}"), (1, "c", 5, "{}")]
    assert _levels(engines, load, events, ABC) == {1: 3}
    assert _levels(engines, load, events, ABC, modes=frozenset({FunnelMode.strict_increase})) == {1: 1}


def test_window_is_inclusive_and_measured_from_step_one(engines: Engines, load: Callable[..., int]) -> None:
    """A step exactly `window` after step 1 counts; one microsecond later does not."""
    events = [
        (1, "a", 0, "{}"),
        (1, "b", 5, "{}"),
        (1, "c", 10, "{}"),
        (2, "a", 0, "{}"),
        (2, "b", 5, "{}"),
        (2, "c", 10.000001, "{}"),
    ]
    assert _levels(engines, load, events, ABC, window=timedelta(seconds=10)) == {1: 3, 2: 2}


def test_strict_order_stops_at_unmatched_and_skipped_steps(
    engines: Engines, load: Callable[..., int]
) -> None:
    """Any other event (of a step's type failing its filter, or of another type), or an out-of-order step,
    ends the search."""
    steps = [Step("a"), Step("b", {"p": "1"}), Step("c")]
    events = [
        (1, "a", 0, "{}"),
        (1, "b", 1, '{"p": "2"}'),
        (1, "b", 2, '{"p": "1"}'),
        (1, "c", 3, "{}"),
        (2, "a", 0, "{}"),
        (2, "c", 1, "{}"),
        (2, "b", 2, '{"p": "1"}'),
        (3, "a", 0, "{}"),
        (3, "x", 1, "{}"),
        (3, "b", 2, '{"p": "1"}'),
        (3, "c", 3, "{}"),
        # An unmatched row at the same instant as step 1 sorts before it, so it does not stop.
        (4, "b", 0, '{"p": "2"}'),
        (4, "a", 0, "{}"),
        (4, "b", 1, '{"p": "1"}'),
        # ... but one at the same instant as step 2 does, before step 2 is taken.
        (5, "a", 0, "{}"),
        (5, "b", 1, '{"p": "1"}'),
        (5, "b", 1, '{"p": "2"}'),
    ]
    strict = frozenset({FunnelMode.strict_order})
    assert _levels(engines, load, events, steps, modes=strict) == {1: 1, 2: 1, 3: 1, 4: 2, 5: 1}
    assert _levels(engines, load, events, steps) == {1: 3, 2: 2, 3: 3, 4: 2, 5: 2}


def test_strict_order_is_interrupted_by_events_of_other_types(
    engines: Engines, load: Callable[..., int]
) -> None:
    """view, home, cart: windowFunnel('strict_order') over all of the customer's events stops at home (1 step)."""
    steps = [Step("view"), Step("cart")]
    events = [
        (1, "view", 0, "{}"),
        (1, "home", 1, "{}"),
        (1, "cart", 2, "{}"),
        (2, "view", 0, "{}"),
        (2, "cart", 1, "{}"),
        (2, "home", 2, "{}"),  # after the chain is complete: no effect
        (3, "home", 0, "{}"),  # before any step 1: no effect
        (3, "view", 1, "{}"),
        (3, "cart", 2, "{}"),
        (4, "home", 0, "{}"),  # no step at all: level 0
    ]
    strict = frozenset({FunnelMode.strict_order})
    assert _levels(engines, load, events, steps, modes=strict) == {1: 1, 2: 2, 3: 2, 4: 0}
    q = FunnelQuery(load(events), steps, modes=strict)
    for engine in engines:
        [result] = run_funnel(engine, q)
        assert [s.count for s in result.steps] == [3, 2]
    # The other modes read only the steps' events: home never interrupts them.
    assert _levels(engines, load, events, steps) == {1: 2, 2: 2, 3: 2}
    dedup = frozenset({FunnelMode.strict_deduplication})
    assert _levels(engines, load, events, steps, modes=dedup) == {1: 2, 2: 2, 3: 2}


def test_strict_deduplication_stops_at_a_repeated_step(engines: Engines, load: Callable[..., int]) -> None:
    """A-B-B-C stops at the second B with level 2, as does a tie of two Bs at one instant."""
    dedup = frozenset({FunnelMode.strict_deduplication})
    events = [
        (1, "a", 0, "{}"),
        (1, "b", 1, "{}"),
        (1, "b", 2, "{}"),
        (1, "c", 3, "{}"),
        (2, "a", 0, "{}"),
        (2, "b", 1, "{}"),
        (2, "b", 1, "{}"),
        (2, "c", 3, "{}"),
    ]
    assert _levels(engines, load, events, ABC, modes=dedup) == {1: 2, 2: 2}


def test_funnel_counts_conversions_medians_and_breakdown(engines: Engines, load: Callable[..., int]) -> None:
    """Step counts, conversion rates and median step times agree with the Python port, on both engines."""
    duck, ch = engines
    events = [
        (1, "a", 0, "{}"),
        (1, "b", 60, "{}"),
        (1, "c", 600, "{}"),
        (2, "a", 0, "{}"),
        (2, "a", 100, "{}"),
        (2, "b", 130, "{}"),
        (3, "a", 0, "{}"),
        (3, "b", 20, "{}"),
        (4, "a", 0, "{}"),
        (5, "b", 0, "{}"),
        (5, "c", 1, "{}"),  # never does step 1: not in the funnel
    ]
    org = load(events, customers=[(1, "douyin"), (2, "douyin"), (3, "taobao"), (4, None)])
    q = FunnelQuery(org, ABC, window=timedelta(hours=1))
    result = run_funnel(duck, q)
    assert result == run_funnel(ch, q)
    assert len(result) == 1
    counts = [s.count for s in result[0].steps]
    assert counts == [4, 3, 1]
    assert [s.conversion_from_start for s in result[0].steps] == [1.0, 0.75, 0.25]
    assert result[0].steps[2].conversion_from_previous == pytest.approx(1 / 3)
    per_customer = {
        cid: python_window_funnel([(float(t), e, p) for c, e, t, p in events if c == cid], q)
        for cid in range(1, 6)
    }
    step2_times = [v[1][1] for v in per_customer.values() if v[0] >= 2]
    assert result[0].steps[1].median_seconds_from_previous == statistics.median(step2_times) == 30.0
    assert result[0].steps[2].median_seconds_from_previous == 540.0

    by_source = run_funnel(duck, FunnelQuery(org, ABC, window=timedelta(hours=1), breakdown="source"))
    assert by_source == run_funnel(ch, FunnelQuery(org, ABC, window=timedelta(hours=1), breakdown="source"))
    assert {r.breakdown_value: [s.count for s in r.steps] for r in by_source} == {
        None: [1, 0, 0],
        "douyin": [2, 2, 1],
        "taobao": [1, 1, 0],
    }


def test_date_range_limits_every_step(engines: Engines, load: Callable[..., int]) -> None:
    """Events outside [date_from, date_to) are ignored for every step."""
    duck, ch = engines
    events = [(1, "a", 0, "{}"), (1, "b", 10, "{}"), (2, "a", 20, "{}"), (2, "b", 30, "{}")]
    q = FunnelQuery(
        load(events),
        [Step("a"), Step("b")],
        date_from=T0 + timedelta(seconds=5),
        date_to=T0 + timedelta(seconds=30),
    )
    result = run_funnel(duck, q)
    assert result == run_funnel(ch, q)
    assert [s.count for s in result[0].steps] == [1, 0]


def test_empty_funnel_reports_zeros(engines: Engines, load: Callable[..., int]) -> None:
    """An organization with no matching events gets zero counts and no rates."""
    duck, ch = engines
    q = FunnelQuery(load([(1, "x", 0, "{}")]), ABC)
    result = run_funnel(duck, q)
    assert result == run_funnel(ch, q)
    assert [s.count for s in result[0].steps] == [0, 0, 0]
    assert result[0].steps[1].conversion_from_start is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": []}, "1 to 32 steps"),
        ({"steps": [Step("a")] * 33}, "1 to 32 steps"),
        ({"modes": frozenset({"strict"})}, "unknown funnel mode"),
        ({"window": timedelta(0)}, "window must be positive"),
        ({"breakdown": "mobile"}, "breakdown"),
        ({"date_from": T0, "date_to": T0}, "date_from must be before"),
    ],
)
def test_bad_queries_are_rejected_with_a_clear_message(kwargs: dict, message: str) -> None:
    """Each invalid field is named in the error."""
    args: dict = {"org_id": 1, "steps": ABC, **kwargs}
    with pytest.raises(ValueError, match=message):
        FunnelQuery(**args)


def test_bad_steps_are_rejected() -> None:
    """Property filters need a plain key and a non-empty string value."""
    with pytest.raises(ValueError, match="property key"):
        Step("a", {"a.b": "1"})
    with pytest.raises(ValueError, match="non-empty string"):
        Step("a", {"p": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="event_type"):
        Step("")


def test_level_methods_are_validated() -> None:
    """The ASOF-join method refuses the strict stops it cannot express; unknown methods are named."""
    q = FunnelQuery(1, ABC, modes=frozenset({FunnelMode.strict_order}))
    with pytest.raises(ValueError, match="chain method"):
        customer_levels_sql(q, method="chain")
    with pytest.raises(ValueError, match="method must be"):
        customer_levels_sql(q, method="fast")
    assert customer_levels_sql(q) == customer_levels_sql(q, method="passes")
    default = FunnelQuery(1, ABC)
    assert (
        customer_levels_sql(default)
        == customer_levels_sql(default, method="chain")
        != customer_levels_sql(default, method="passes")
    )


def test_medians_agree_between_methods_over_many_customers(
    engines: Engines, load: Callable[..., int]
) -> None:
    """Step counts and median step times from both level methods agree with the Python port, on both engines."""
    import random

    rng = random.Random(11)
    events = [
        (cid, rng.choice("abcx"), rng.randrange(0, 400), rng.choice(PROPS))
        for cid in range(1, 120)
        for _ in range(rng.randrange(1, 9))
    ]
    duck, ch = engines
    org = load(events, decoy=False)
    steps = [Step("a"), Step("b"), Step("c", {"p": "1"})]
    for modes in (frozenset(), frozenset({FunnelMode.strict_increase})):
        q = FunnelQuery(org, steps, window=timedelta(seconds=90), modes=modes)
        port = {
            cid: python_window_funnel(
                [(float(t), e, p) for c, e, t, p in events if c == cid and e in "abc"], q
            )
            for cid in {e[0] for e in events if e[1] in "abc"}
        }
        want_counts = [sum(1 for lvl, _ in port.values() if lvl >= k) for k in (1, 2, 3)]
        want_medians = [
            statistics.median(ts[k - 1] for lvl, ts in port.values() if lvl >= k)
            if any(lvl >= k for lvl, _ in port.values())
            else None
            for k in (2, 3)
        ]
        result = run_funnel(duck, q)
        assert result == run_funnel(ch, q)
        assert [s.count for s in result[0].steps] == want_counts
        assert [s.median_seconds_from_previous for s in result[0].steps[1:]] == want_medians
        for method in ("chain", "passes"):
            rows = duck.query(customer_levels_sql(q, method=method))
            assert {r[0]: r[1] for r in rows} == {cid: lvl for cid, (lvl, _) in port.items()}


def test_parse_modes() -> None:
    """'default' is the empty set; names map to FunnelMode."""
    assert parse_modes("default") == frozenset()
    assert parse_modes(["strict_order", "strict_increase"]) == {
        FunnelMode.strict_order,
        FunnelMode.strict_increase,
    }
