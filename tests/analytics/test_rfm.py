"""RFM scores (recency and monetary by quintile, frequency by order count) and segments on known data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from siyu.analytics.projection import Projection
from siyu.analytics.rfm import SEGMENT_GRID, SEGMENTS, customer_rfm, fm_score, rfm_report, segment_of
from siyu.commerce.models import Order
from siyu.customers.models import Customer

AS_OF = datetime(2026, 6, 30, 12, tzinfo=UTC)


def _buyer(db: Session, org_id: int, orders: list[tuple[datetime, int]]) -> int:
    c = Customer(org_id=org_id)
    db.add(c)
    db.flush()
    for i, (at, amount) in enumerate(orders):
        db.add(
            Order(
                org_id=org_id,
                customer_id=c.id,
                platform="p",
                external_id=f"{c.id}-{i}",
                amount_fen=amount,
                paid_at=at,
            )
        )
    return c.id


def test_segment_map_covers_the_grid_with_eleven_segments() -> None:
    assert len(SEGMENT_GRID) == 25
    assert set(SEGMENT_GRID.values()) == set(SEGMENTS) and len(SEGMENTS) == 11
    assert segment_of(5, 5) == "champions" and segment_of(1, 1) == "lost" and segment_of(1, 5) == "cant_lose"
    assert segment_of(5, 1) == "new_customers" and segment_of(2, 3) == "at_risk"
    assert fm_score(4, 5) == 5 and fm_score(3, 4) == 4 and fm_score(1, 2) == 2
    with pytest.raises(ValueError):
        segment_of(0, 3)


def test_quintiles_on_known_data(engine: Engine, db: Session, make_tenant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = make_tenant()
    # Buyer i (1..10) ordered i times, 1,000 fen each, last order 11 - i days before AS_OF:
    # R and M ranks are both i, so those scores are 1 + 5 * (i - 1) // 10; F is the order count i, capped at 5.
    ids = []
    for i in range(1, 11):
        last = AS_OF - timedelta(days=11 - i)
        ids.append(_buyer(db, t.org_id, [(last - timedelta(days=30 * k), 1_000) for k in range(i)]))
    _buyer(db, t.org_id, [(AS_OF + timedelta(days=1), 5_000)])  # after as_of: not a buyer yet
    db.commit()
    proj = Projection(engine, tmp_path / "r.duckdb")
    proj.refresh()
    rows = customer_rfm(proj.engine, t.org_id, as_of=AS_OF)
    assert [r.customer_id for r in rows] == ids
    # FM by hand, (F + M) / 2 rounded half up: i = 1..10 gives F 1,2,3,4,5,5,5,5,5,5 and M 1,1,2,2,3,3,4,4,5,5.
    expected_fm = [1, 2, 3, 3, 4, 4, 5, 5, 5, 5]
    for i, r in enumerate(rows, 1):
        s = 1 + 5 * (i - 1) // 10
        assert (r.recency_days, r.frequency, r.monetary_fen) == (11 - i, i, 1_000 * i)
        assert (r.r, r.f, r.m, r.fm) == (s, min(i, 5), s, expected_fm[i - 1])
    report = rfm_report(proj.engine, t.org_id, as_of=AS_OF)
    assert report.buyers == 10
    # (R, FM) per buyer: (1,1) (1,2) (2,3) (2,3) (3,4) (3,4) (4,5) (4,5) (5,5) (5,5), read off the map.
    assert {k: v for k, v in report.segments.items() if v} == {
        "lost": 1,
        "hibernating": 1,
        "at_risk": 2,
        "loyal": 4,
        "champions": 2,
    }
    assert report.grid[0][:2] == [1, 1] and report.grid[1][2] == 2 and report.grid[2][3] == 2
    assert report.grid[3][4] == 2 and report.grid[4][4] == 2
    assert sum(map(sum, report.grid)) == 10
    proj.close()


def test_ties_share_a_score(engine: Engine, db: Session, make_tenant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = make_tenant()
    # Five one-order buyers: equal frequency ranks them all first, so F = 1 for everyone.
    for i in range(5):
        _buyer(db, t.org_id, [(AS_OF - timedelta(days=5 - i), 1_000 * (i + 1))])
    db.commit()
    proj = Projection(engine, tmp_path / "r.duckdb")
    proj.refresh()
    rows = customer_rfm(proj.engine, t.org_id, as_of=AS_OF)
    assert [r.f for r in rows] == [1] * 5
    assert [r.r for r in rows] == [1, 2, 3, 4, 5] and [r.m for r in rows] == [1, 2, 3, 4, 5]
    assert rows[-1].segment == segment_of(5, fm_score(1, 5)) == "potential_loyalists"
    proj.close()


def test_frequency_is_the_order_count_when_most_buyers_ordered_once(  # type: ignore[no-untyped-def]
    engine: Engine, db: Session, make_tenant, tmp_path: Path
) -> None:
    t = make_tenant()
    # Like the demo: most buyers ordered once, a few twice or three times, one seven times. By rank
    # quintiles the 40 one-order buyers (80 %) would tie for F = 1 and the next count would jump to F = 5.
    counts = [1] * 40 + [2] * 5 + [3] * 3 + [4] + [7]
    ids = {}
    for i, n in enumerate(counts):
        ids[_buyer(db, t.org_id, [(AS_OF - timedelta(days=1 + i + 20 * k), 3_000) for k in range(n)])] = n
    db.commit()
    proj = Projection(engine, tmp_path / "r.duckdb")
    proj.refresh()
    rows = customer_rfm(proj.engine, t.org_id, as_of=AS_OF)
    assert {r.customer_id: (r.frequency, r.f) for r in rows} == {c: (n, min(n, 5)) for c, n in ids.items()}
    per_column = {f: sum(1 for r in rows if r.f == f) for f in range(1, 6)}
    assert per_column == {1: 40, 2: 5, 3: 3, 4: 1, 5: 1}
    proj.close()
