"""In-memory routing over one pool of accounts: which account takes the next new customer.

The decision is O(log n): free accounts sit in min-heaps (one per tier and selector, built lazily),
keyed by load for least-loaded/schedule/region rules and by the last pick for round-robin. Entries
are invalidated lazily with a per-account version, so a pick costs one pop and one push per built
heap the account belongs to. The database stays the authority on caps: the caller reserves the
chosen account with a conditional UPDATE and, if that fails, refreshes the account here and asks again.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from siyu.channels.models import RoutingRule

HOURS_PER_WEEK = 168
PRIMARY, BACKUP = 0, 1

Selector = tuple[str, object]  # ("all", None) | ("hour", hour_of_week) | ("region", name)
ALL: Selector = ("all", None)


def warmup_daily_cap(created_at: datetime, now: datetime, warmup: Iterable[int], daily_cap: int) -> int:
    """The daily add cap of an account on `now`: the warm-up cap of its week of life, then `daily_cap`."""
    caps = list(warmup)
    week = max(0, (now - created_at).days) // 7
    return min(daily_cap, int(caps[week])) if week < len(caps) else daily_cap


def hours_mask(hours: Mapping[str, object] | None) -> int:
    """A 168-bit mask of local hours of the week from {"weekday": [start, end)}; 0 means always."""
    mask = 0
    for day, span in (hours or {}).items():
        weekday = int(day)
        if not 0 <= weekday <= 6 or not isinstance(span, list | tuple) or len(span) != 2:
            raise ValueError(f"hours[{day!r}] must be [start_hour, end_hour) on a weekday 0-6")
        start, end = int(span[0]), int(span[1])
        if not 0 <= start < end <= 24:
            raise ValueError(f"hours[{day!r}] must satisfy 0 <= start < end <= 24, got {span!r}")
        for hour in range(start, end):
            mask |= 1 << (weekday * 24 + hour)
    return mask


def hour_of_week(local_time: datetime) -> int:
    """Index 0-167 of a local time's hour in its week (Monday 00:00 is 0)."""
    return local_time.weekday() * 24 + local_time.hour


@dataclass(slots=True)
class Slot:
    """What routing knows of one account: its load (friends plus reservations) and its caps today."""

    account_id: int
    load: int
    soft_cap: int
    hard_cap: int
    day_adds: int
    daily_cap: int
    active: bool = True
    is_backup: bool = False
    regions: frozenset[str] = frozenset()
    mask: int = 0
    last_pick: int = 0
    version: int = 0

    @property
    def limit(self) -> int:
        """Primaries stop at their soft cap; backups absorb overflow up to the hard cap."""
        return self.hard_cap if self.is_backup else min(self.soft_cap, self.hard_cap)

    @property
    def free(self) -> bool:
        """Whether the account may take one more customer now."""
        return self.active and self.day_adds < self.daily_cap and self.load < self.limit

    def matches(self, selector: Selector) -> bool:
        """Whether the account belongs to the heap of this selector."""
        kind, value = selector
        if kind == "hour":
            return self.mask == 0 or bool(self.mask >> int(value) & 1)  # type: ignore[call-overload]
        if kind == "region":
            return value in self.regions
        return True


@dataclass
class PoolRouter:
    """The routing state of one pool for one local day."""

    rule: RoutingRule
    day: date
    slots: dict[int, Slot] = field(default_factory=dict)
    _heaps: dict[tuple[int, Selector], list[tuple[int, int, int]]] = field(default_factory=dict)
    _seq: int = 0

    @classmethod
    def build(cls, rule: RoutingRule, day: date, slots: Iterable[Slot]) -> PoolRouter:
        """A router over the given accounts."""
        router = cls(rule=RoutingRule(rule), day=day)
        for slot in slots:
            router.slots[slot.account_id] = slot
        return router

    def _key(self, slot: Slot) -> tuple[int, int, int]:
        first = slot.last_pick if self.rule is RoutingRule.round_robin else slot.load
        return (first, slot.account_id, slot.version)

    def _heap(self, tier: int, selector: Selector) -> list[tuple[int, int, int]]:
        heap = self._heaps.get((tier, selector))
        if heap is None:
            heap = [
                self._key(s)
                for s in self.slots.values()
                if (s.is_backup == (tier == BACKUP)) and s.free and s.matches(selector)
            ]
            heapq.heapify(heap)
            self._heaps[(tier, selector)] = heap
        return heap

    def _top(self, tier: int, selector: Selector) -> Slot | None:
        heap = self._heap(tier, selector)
        while heap:
            _, account_id, version = heap[0]
            slot = self.slots.get(account_id)
            if slot is None or slot.version != version or not slot.free:
                # Stale entry or a full account: it only becomes free again through `update`, which re-pushes it.
                heapq.heappop(heap)
                continue
            return slot
        return None

    def selectors(self, hour: int | None, region: str | None) -> list[Selector]:
        """The heaps to try in order for this rule, hour of week and customer region."""
        if self.rule is RoutingRule.schedule and hour is not None:
            return [("hour", hour)]
        if self.rule is RoutingRule.region and region:
            return [("region", region), ALL]
        return [ALL]

    def choose(self, *, hour: int | None = None, region: str | None = None) -> Slot | None:
        """The account that should take the next customer, or None when every account is full."""
        order = self.selectors(hour, region)
        for tier in (PRIMARY, BACKUP):
            for selector in order:
                slot = self._top(tier, selector)
                if slot is not None:
                    return slot
        return None

    def _reposition(self, slot: Slot) -> None:
        slot.version += 1
        if not slot.free:
            return
        tier = BACKUP if slot.is_backup else PRIMARY
        key = self._key(slot)
        for (heap_tier, selector), heap in self._heaps.items():
            if heap_tier == tier and slot.matches(selector):
                heapq.heappush(heap, key)
        self._compact()

    def _compact(self) -> None:
        # Stale entries normally leave from the top; rebuild a heap that grew far past the pool.
        limit = 4 * len(self.slots) + 64
        for key, heap in list(self._heaps.items()):
            if len(heap) > limit:
                del self._heaps[key]

    def commit(self, slot: Slot) -> None:
        """Record that `slot` took a customer (its reservation succeeded)."""
        self._seq += 1
        slot.load += 1
        slot.day_adds += 1
        slot.last_pick = self._seq
        self._reposition(slot)

    def update(
        self,
        account_id: int,
        *,
        load: int | None = None,
        day_adds: int | None = None,
        active: bool | None = None,
    ) -> None:
        """Replace what is known of one account (e.g. after a failed reservation showed it full)."""
        slot = self.slots.get(account_id)
        if slot is None:
            return
        if load is not None:
            slot.load = load
        if day_adds is not None:
            slot.day_adds = day_adds
        if active is not None:
            slot.active = active
        self._reposition(slot)

    def remove(self, account_id: int) -> None:
        """Forget an account (left the pool); its heap entries die lazily."""
        self.slots.pop(account_id, None)


def linear_choose(
    rule: RoutingRule, slots: Iterable[Slot], *, hour: int | None = None, region: str | None = None
) -> Slot | None:
    """The same decision by scanning every account: the baseline the heaps are measured against."""
    rule = RoutingRule(rule)
    selectors: list[Selector]
    if rule is RoutingRule.schedule and hour is not None:
        selectors = [("hour", hour)]
    elif rule is RoutingRule.region and region:
        selectors = [("region", region), ALL]
    else:
        selectors = [ALL]
    pool = list(slots)
    for tier in (PRIMARY, BACKUP):
        for selector in selectors:
            best: Slot | None = None
            best_key: tuple[int, int] | None = None
            for s in pool:
                if s.is_backup != (tier == BACKUP) or not s.free or not s.matches(selector):
                    continue
                key = (s.last_pick if rule is RoutingRule.round_robin else s.load, s.account_id)
                if best_key is None or key < best_key:
                    best, best_key = s, key
            if best is not None:
                return best
    return None
