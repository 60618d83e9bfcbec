"""Property tests of the in-memory router: over random pools, caps, warm-up ages, statuses and
arrival streams, no account ever exceeds a cap, and the heap decision equals a linear scan's."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siyu.channels.models import RoutingRule
from siyu.channels.routing import (
    PoolRouter,
    Slot,
    hour_of_week,
    hours_mask,
    linear_choose,
    warmup_daily_cap,
)


@st.composite
def pools(draw: st.DrawFn) -> tuple[RoutingRule, list[Slot]]:
    rule = draw(st.sampled_from(list(RoutingRule)))
    n = draw(st.integers(1, 12))
    now = datetime(2026, 11, 23, 4, tzinfo=UTC)
    warmup = draw(st.lists(st.integers(1, 6), max_size=3))
    daily = draw(st.integers(1, 10))
    slots = []
    for i in range(n):
        hard = draw(st.integers(1, 30))
        soft = draw(st.integers(1, 30))
        age_days = draw(st.integers(0, 40))
        slots.append(
            Slot(
                account_id=i + 1,
                load=draw(st.integers(0, hard)),
                soft_cap=soft,
                hard_cap=hard,
                day_adds=draw(st.integers(0, 3)),
                daily_cap=warmup_daily_cap(now - timedelta(days=age_days), now, warmup, daily),
                active=draw(st.booleans().map(lambda b: b or draw(st.booleans()))),
                is_backup=draw(st.integers(0, 3)) == 0,
                regions=frozenset(draw(st.lists(st.sampled_from(["gd", "sh", "bj"]), max_size=2))),
                mask=draw(
                    st.sampled_from(
                        [0, hours_mask({"0": [9, 18]}), hours_mask({"0": [0, 24], "6": [10, 12]})]
                    )
                ),
            )
        )
    return rule, slots


arrivals = st.lists(
    st.tuples(st.sampled_from([None, "gd", "sh"]), st.sampled_from([0, 10, 150])), max_size=80
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(pools(), arrivals)
def test_no_account_ever_exceeds_a_cap(
    pool: tuple[RoutingRule, list[Slot]], stream: list[tuple[str | None, int]]
) -> None:
    rule, slots = pool
    start = {s.account_id: (s.load, s.day_adds) for s in slots}
    router = PoolRouter.build(rule, date(2026, 11, 23), copy.deepcopy(slots))
    shadow = copy.deepcopy(slots)  # the same stream decided by a linear scan
    for region, hour in stream:
        chosen = router.choose(hour=hour, region=region)
        expected = linear_choose(rule, shadow, hour=hour, region=region)
        assert (chosen and chosen.account_id) == (expected and expected.account_id)
        if chosen is None:
            # Every account is full, paused/blocked, out of hours, or at today's cap.
            continue
        assert chosen.active, "paused or blocked account chosen"
        if chosen.is_backup:
            assert not any(
                s.free and not s.is_backup and s.matches(sel)
                for s in router.slots.values()
                for sel in router.selectors(hour, region)
            ), "backup used while a primary was free"
        router.commit(chosen)
        twin = next(s for s in shadow if s.account_id == chosen.account_id)
        twin.load, twin.day_adds, twin.last_pick = chosen.load, chosen.day_adds, chosen.last_pick
    for s in router.slots.values():
        _, adds0 = start[s.account_id]
        taken = s.day_adds - adds0
        if taken:
            assert s.active
            assert s.day_adds <= s.daily_cap
            assert s.load <= s.hard_cap
            if not s.is_backup:
                assert s.load <= s.soft_cap


def test_round_robin_takes_turns() -> None:
    slots = [
        Slot(account_id=i, load=0, soft_cap=10, hard_cap=10, day_adds=0, daily_cap=10) for i in (1, 2, 3)
    ]
    router = PoolRouter.build(RoutingRule.round_robin, date(2026, 1, 1), slots)
    picks = []
    for _ in range(6):
        s = router.choose()
        assert s is not None
        router.commit(s)
        picks.append(s.account_id)
    assert picks == [1, 2, 3, 1, 2, 3]


def test_least_loaded_and_backup_overflow() -> None:
    slots = [
        Slot(account_id=1, load=5, soft_cap=6, hard_cap=10, day_adds=0, daily_cap=100),
        Slot(account_id=2, load=3, soft_cap=6, hard_cap=10, day_adds=0, daily_cap=100),
        Slot(account_id=9, load=0, soft_cap=1, hard_cap=2, day_adds=0, daily_cap=100, is_backup=True),
    ]
    router = PoolRouter.build(RoutingRule.least_loaded, date(2026, 1, 1), slots)
    picks = []
    while (s := router.choose()) is not None:
        router.commit(s)
        picks.append(s.account_id)
    # 2 fills to 5 first, then they alternate to the soft cap 6; the backup takes two more (its hard cap).
    assert picks == [2, 2, 1, 2, 9, 9]


def test_schedule_and_region_selectors() -> None:
    monday_9_18 = hours_mask({"0": [9, 18]})
    slots = [
        Slot(
            account_id=1,
            load=0,
            soft_cap=5,
            hard_cap=5,
            day_adds=0,
            daily_cap=5,
            mask=monday_9_18,
            regions=frozenset({"gd"}),
        ),
        Slot(
            account_id=2, load=3, soft_cap=5, hard_cap=5, day_adds=0, daily_cap=5, regions=frozenset({"sh"})
        ),
    ]
    sched = PoolRouter.build(RoutingRule.schedule, date(2026, 1, 1), copy.deepcopy(slots))
    monday_10 = hour_of_week(datetime(2026, 11, 23, 10))
    assert sched.choose(hour=monday_10).account_id == 1  # type: ignore[union-attr]
    assert sched.choose(hour=monday_10 + 24).account_id == 2  # type: ignore[union-attr]
    region = PoolRouter.build(RoutingRule.region, date(2026, 1, 1), copy.deepcopy(slots))
    assert region.choose(region="sh").account_id == 2  # type: ignore[union-attr]
    assert region.choose(region="xj").account_id == 1  # type: ignore[union-attr]


def test_warmup_schedule() -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    caps = [
        warmup_daily_cap(created, created + timedelta(days=d), [20, 40, 80], 200)
        for d in (0, 6, 7, 14, 21, 400)
    ]
    assert caps == [20, 20, 40, 80, 200, 200]


@pytest.mark.parametrize("bad", [{"7": [9, 18]}, {"0": [18, 9]}, {"0": [9]}, {"0": [0, 25]}])
def test_bad_hours_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="hours"):
        hours_mask(bad)
