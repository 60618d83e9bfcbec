"""Attempt counters behave the same in memory and in the real Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from siyu.kit.ratelimit import AttemptCounter, MemoryAttemptCounter, RedisAttemptCounter

REDIS_URL = os.environ.get("SIYU_TEST_REDIS_URL", "")
KINDS = ["memory"] + (["redis"] if REDIS_URL else [])


@pytest.fixture(params=KINDS)
def counter(request: pytest.FixtureRequest) -> Iterator[AttemptCounter]:
    if request.param == "memory":
        yield MemoryAttemptCounter(window_seconds=60)
        return
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"siyu-test:{uuid.uuid4().hex}:"
    yield RedisAttemptCounter(client, window_seconds=60, prefix=prefix)
    for key in client.scan_iter(prefix + "*"):
        client.delete(key)


def test_counts_per_key_and_resets(counter: AttemptCounter) -> None:
    assert counter.count("a") == 0
    assert [counter.hit("a") for _ in range(3)] == [1, 2, 3]
    assert counter.hit("b") == 1
    assert counter.count("a") == 3
    counter.reset("a")
    assert counter.count("a") == 0
    assert counter.count("b") == 1


def test_release_takes_back_one_attempt_and_never_goes_below_zero(counter: AttemptCounter) -> None:
    assert [counter.hit("a") for _ in range(2)] == [1, 2]
    counter.release("a")
    assert counter.count("a") == 1
    counter.release("a")
    counter.release("a")
    counter.release("never-hit")
    assert counter.count("a") == 0 and counter.count("never-hit") == 0
    assert counter.hit("a") == 1


def test_window_expires() -> None:
    counter = MemoryAttemptCounter(window_seconds=0)
    counter.hit("a")
    assert counter.count("a") == 0


@pytest.mark.skipif(not REDIS_URL, reason="SIYU_TEST_REDIS_URL not set")
def test_redis_key_gets_a_ttl() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"siyu-test:{uuid.uuid4().hex}:"
    RedisAttemptCounter(client, window_seconds=60, prefix=prefix).hit("x")
    ttl = client.ttl(prefix + "x")
    client.delete(prefix + "x")
    assert 0 < ttl <= 60
