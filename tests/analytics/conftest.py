"""Fixtures for the analytics tests: one DuckDB and one chdb engine per session, and a loader.

Each test (and each hypothesis example) loads its rows under a fresh org_id, so examples never see
each other's data and every query is also checked to stay inside its organization.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from siyu.analytics.engines import ChdbEngine, DuckDBEngine

T0 = datetime(2024, 3, 1)

# (customer_id, event_type, seconds after T0 or a datetime, properties JSON)
EventRow = tuple[int, str, float | datetime, str]
CustomerRow = tuple[int, str | None]  # (customer_id, source)


@pytest.fixture(scope="session")
def engines() -> Iterator[tuple[DuckDBEngine, ChdbEngine]]:
    """Both engines with the analytic schema; chdb allows one session per process, so share it."""
    duck, ch = DuckDBEngine(), ChdbEngine()
    duck.create_schema()
    ch.create_schema()
    yield duck, ch
    duck.close()
    ch.close()


_org_ids = itertools.count(1000)


def _columns(org_id: int, events: Sequence[EventRow]) -> dict[str, Any]:
    times = [T0 + timedelta(seconds=s) if not isinstance(s, datetime) else s for _, _, s, _ in events]
    return {
        "org_id": np.full(len(events), org_id, dtype=np.int64),
        "event_id": np.arange(len(events), dtype=np.int64),
        "customer_id": np.array([e[0] for e in events], dtype=np.int64),
        "event_type": np.array([e[1] for e in events], dtype=object),
        "occurred_at": np.array(times, dtype="datetime64[us]"),
        "account_id": np.array([None] * len(events), dtype=object),
        "source": np.array([None] * len(events), dtype=object),
        "properties": np.array([e[3] for e in events], dtype=object),
    }


@pytest.fixture
def load(engines: tuple[DuckDBEngine, ChdbEngine]) -> Callable[..., int]:
    """Load events (and optionally customers) into both engines under a new org_id; returns it.

    A decoy copy of the same events goes to org_id + 1 so a query that forgets its org shows up
    (property tests skip it to stay fast; the hand-made tests keep it).
    """

    def _load(
        events: Sequence[EventRow], customers: Sequence[CustomerRow] = (), *, decoy: bool = True
    ) -> int:
        org_id = next(_org_ids)
        next(_org_ids)  # reserve org_id + 1 for the decoy
        for engine in engines:
            if events:
                engine.load("events", _columns(org_id, events))
                if decoy:
                    engine.load("events", _columns(org_id + 1, events))
            if customers:
                engine.load(
                    "customers",
                    {
                        "org_id": np.full(len(customers), org_id, dtype=np.int64),
                        "customer_id": np.array([c[0] for c in customers], dtype=np.int64),
                        "source": np.array([c[1] for c in customers], dtype=object),
                        "channel": np.array([None] * len(customers), dtype=object),
                        "stage": np.array([None] * len(customers), dtype=object),
                        "account_id": np.array([None] * len(customers), dtype=object),
                        "operator_id": np.array([None] * len(customers), dtype=object),
                        "first_seen_at": np.full(len(customers), np.datetime64(T0, "us")),
                    },
                )
        return org_id

    return _load
