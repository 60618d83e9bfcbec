"""Fixed-window attempt counters, for login throttling: Redis when configured, memory otherwise.

The in-memory counter is right for the single-process embedded demo; a deployment with several
workers sets ``SIYU_REDIS_URL`` so every worker sees the same counts.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import redis


class AttemptCounter(Protocol):
    """Counts attempts per key within a time window."""

    def hit(self, key: str) -> int:
        """Record an attempt and return how many the key has in the current window."""
        ...

    def count(self, key: str) -> int:
        """Attempts the key has in the current window, without recording one."""
        ...

    def reset(self, key: str) -> None:
        """Forget the key's attempts (after a successful login)."""
        ...

    def release(self, key: str) -> None:
        """Take back one recorded attempt (it turned out to be a successful login), never below zero."""
        ...


class MemoryAttemptCounter:
    """Process-local counter; windows start at a key's first attempt."""

    def __init__(self, window_seconds: int) -> None:
        self.window = window_seconds
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, int]] = {}

    def _live(self, key: str, now: float) -> tuple[float, int]:
        started, n = self._entries.get(key, (now, 0))
        return (now, 0) if now - started >= self.window else (started, n)

    def hit(self, key: str) -> int:
        """Record an attempt and return the window's count."""
        now = time.monotonic()
        with self._lock:
            started, n = self._live(key, now)
            self._entries[key] = (started, n + 1)
            if len(self._entries) > 100_000:  # bound memory under a spray of distinct keys
                self._entries = {k: v for k, v in self._entries.items() if now - v[0] < self.window}
            return n + 1

    def count(self, key: str) -> int:
        """The window's count for the key."""
        with self._lock:
            return self._live(key, time.monotonic())[1]

    def reset(self, key: str) -> None:
        """Forget the key."""
        with self._lock:
            self._entries.pop(key, None)

    def release(self, key: str) -> None:
        """One attempt fewer in the key's current window."""
        with self._lock:
            started, n = self._live(key, time.monotonic())
            if n > 0:
                self._entries[key] = (started, n - 1)


_RELEASE = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"""


class RedisAttemptCounter:
    """Shared counter: INCR plus an expiry set on the first attempt, atomically in one pipeline."""

    def __init__(self, client: redis.Redis, window_seconds: int, prefix: str = "siyu:attempts:") -> None:
        self.client = client
        self.window = window_seconds
        self.prefix = prefix
        self._release = client.register_script(_RELEASE)

    def hit(self, key: str) -> int:
        """Record an attempt and return the window's count."""
        name = self.prefix + key
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(name)
        pipe.expire(name, self.window, nx=True)
        n, _ = pipe.execute()
        return int(n)

    def count(self, key: str) -> int:
        """The window's count for the key."""
        value = self.client.get(self.prefix + key)
        return int(value) if value is not None else 0

    def reset(self, key: str) -> None:
        """Forget the key."""
        self.client.delete(self.prefix + key)

    def release(self, key: str) -> None:
        """One attempt fewer, in one atomic step; an expired key stays absent (a bare DECR would make it
        -1 with no expiry, a free attempt for ever)."""
        self._release(keys=[self.prefix + key])


def attempt_counter(redis_url: str, window_seconds: int) -> AttemptCounter:
    """A Redis-backed counter when a URL is configured, else an in-memory one."""
    if redis_url:
        return RedisAttemptCounter(redis.Redis.from_url(redis_url), window_seconds)
    return MemoryAttemptCounter(window_seconds)
