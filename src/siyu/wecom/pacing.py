"""Client-side pacing of WeCom calls: token buckets per (corp, api) so a sync never trips 45009.

WeCom allows 10,000 calls a minute and 150,000 an hour per API per corporation (频率限制,
developer.work.weixin.qq.com/document/path/90312), and blocks the API for a minute or an hour once
one is exceeded. A bucket of capacity C refilled at r per second admits at most C + T r calls in any
window of T seconds, so each API has two buckets, one per window, each keeping C + T r at its quota:
10 % as burst, 90 % as steady rate; a call takes a token from both. The WeCom adapter still waits
out a block on 45009 should another process share the quota.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

WECOM_CALLS_PER_MINUTE = 10_000
WECOM_CALLS_PER_HOUR = 150_000


@dataclass
class TokenBucket:
    """A thread-safe token bucket; `acquire` blocks until a token is available and returns the wait."""

    rate: float  # tokens a second
    capacity: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    tokens: float = field(init=False)
    stamp: float = field(init=False)
    lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.capacity < 1:
            raise ValueError("rate must be > 0 and capacity >= 1")
        self.tokens = self.capacity
        self.stamp = self.clock()

    def acquire(self) -> float:
        """Take one token, sleeping as long as needed; returns the seconds waited."""
        waited = 0.0
        while True:
            with self.lock:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                # The epsilon stops float rounding from asking for an endless series of tiny sleeps.
                if self.tokens >= 1 - 1e-9:
                    self.tokens = max(0.0, self.tokens - 1)
                    return waited
                delay = (1 - self.tokens) / self.rate
            self.sleep(delay)
            waited += delay


class ApiPacer:
    """Buckets per API for one corporation, sized from the per-minute and per-hour quotas."""

    def __init__(
        self,
        per_minute: int = WECOM_CALLS_PER_MINUTE,
        *,
        per_hour: int = WECOM_CALLS_PER_HOUR,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute < 1 or per_hour < 1:
            raise ValueError("per_minute and per_hour must be >= 1")
        self.per_minute, self.per_hour = per_minute, per_hour
        self._clock, self._sleep = clock, sleep
        self._buckets: dict[str, tuple[TokenBucket, TokenBucket]] = {}
        self._lock = threading.Lock()
        self.waited = 0.0

    def _sized(self, quota: int, seconds: float) -> TokenBucket:
        burst = max(1.0, quota * 0.1)
        return TokenBucket((quota - burst) / seconds, burst, clock=self._clock, sleep=self._sleep)

    def buckets(self, api: str) -> tuple[TokenBucket, TokenBucket]:
        """The (minute, hour) buckets of one API (created on first use)."""
        with self._lock:
            found = self._buckets.get(api)
            if found is None:
                found = (self._sized(self.per_minute, 60.0), self._sized(self.per_hour, 3600.0))
                self._buckets[api] = found
            return found

    def acquire(self, api: str) -> float:
        """Wait for a call slot of `api` in both windows; returns the seconds waited."""
        minute, hour = self.buckets(api)
        waited = hour.acquire() + minute.acquire()
        self.waited += waited
        return waited


_PACERS: dict[tuple[str, int], ApiPacer] = {}  # (corp, per-minute quota)
_PACERS_LOCK = threading.Lock()


def pacer_for(corp_id: str, per_minute: int = WECOM_CALLS_PER_MINUTE) -> ApiPacer:
    """The process-wide pacer of a corporation, shared by every sync and task of this process."""
    with _PACERS_LOCK:
        return _PACERS.setdefault((corp_id, per_minute), ApiPacer(per_minute))
