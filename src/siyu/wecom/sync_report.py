"""The report of a reconciliation sync, and the paced, timed caller every sync API call goes through.

Its own module so that the sync's parts (`sync_contacts.py`, `sync_groups.py`) and `sync.py`, which drives
them, all import it without importing each other in a circle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel, Field

from siyu.wecom.pacing import ApiPacer

T = TypeVar("T")


class KindCounts(BaseModel):
    """What the sync did to one kind of record."""

    created: int = 0
    updated: int = 0
    ended: int = 0


class SyncReport(BaseModel):
    """Counts of created/updated/ended per kind, samples of what changed, and where the time went."""

    org_id: int
    started_at: str = ""
    finished_at: str = ""
    members: int = 0
    contacts_seen: int = 0
    follows_seen: int = 0
    groups_seen: int = 0
    merged: int = Field(default=0, description="Profiles merged because WeCom showed a shared unionid.")
    unlicensed_members: list[str] = Field(
        default_factory=list,
        description="Members WeCom would not list customers of (no interoperability licence, 互通许可): "
        "their follow relations and customer tags were left as they were.",
    )
    strategy_tags_error: str = Field(
        default="",
        description="Why WeCom would not list the rule-group tags (规则组标签), when it would not: the mirrored "
        "ones were kept as they were.",
    )
    counts: dict[str, KindCounts] = Field(default_factory=dict)
    samples: dict[str, list[str]] = Field(default_factory=dict)
    api_calls: int = 0
    api_seconds: float = Field(
        default=0.0, description="Time inside WeCom calls (HTTP, back-off included), summed over threads."
    )
    wait_seconds: float = Field(default=0.0, description="Time waiting for the client-side quota.")
    siyu_seconds: float = Field(default=0.0, description="Time in siyu itself (database, mapping).")
    background_api_seconds: float = Field(
        default=0.0,
        description="Of api + wait: calls made by the fetch threads (contact pages, groups) "
        "in parallel with siyu's writes (summed over those threads).",
    )

    def count(self, kind: str, what: str, n: int = 1) -> None:
        """Add `n` to one counter."""
        counts = self.counts.setdefault(kind, KindCounts())
        setattr(counts, what, getattr(counts, what) + n)

    def sample(self, kind: str, text: str, limit: int = 10) -> None:
        """Keep a few examples of each kind of change for the operator."""
        bucket = self.samples.setdefault(kind, [])
        if len(bucket) < limit:
            bucket.append(text)

    def changed(self) -> int:
        """Total of every counter."""
        return sum(c.created + c.updated + c.ended for c in self.counts.values())


@dataclass
class Caller:
    """Calls the adapter through the pacer, timing API time and quota waits separately.

    Calls from any thread but the one that made the Caller (the sync's) are counted as background:
    they overlap siyu's own work instead of adding to it."""

    pacer: ApiPacer | None
    report: SyncReport
    clock: Callable[[], float] = time.perf_counter
    lock: threading.Lock = field(default_factory=threading.Lock)  # the fetch threads report concurrently
    owner: threading.Thread = field(default_factory=threading.current_thread)

    def __call__(self, api: str, fn: Callable[[], T]) -> T:
        waited = self.pacer.acquire(api) if self.pacer is not None else 0.0
        start = self.clock()
        try:
            return fn()
        finally:
            spent = self.clock() - start
            with self.lock:
                self.report.wait_seconds += waited
                self.report.api_seconds += spent
                self.report.api_calls += 1
                if threading.current_thread() is not self.owner:
                    self.report.background_api_seconds += waited + spent
