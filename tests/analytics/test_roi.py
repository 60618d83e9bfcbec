"""Channel ROI (prorated costs, acquired customers, revenue, predicted CLV) and the CLV write-back job."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from siyu.analytics.clv_job import run_clv
from siyu.analytics.models import ChannelCost, CostDimension
from siyu.analytics.projection import Projection
from siyu.analytics.roi import code_costs, local_day_start, prorated_costs, roi_report
from siyu.analytics.service import clv_distribution
from siyu.commerce.models import Order
from siyu.customers.models import Customer
from siyu.kit.errors import Invalid


def _at(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 4, tzinfo=UTC)


def _customer(db: Session, org_id: int, source: str, created: datetime, clv: int | None = None) -> int:
    c = Customer(
        org_id=org_id, source=source, created_at=created, clv_fen=clv, p_alive=None if clv is None else 0.5
    )
    db.add(c)
    db.flush()
    return c.id


def _order(db: Session, org_id: int, cid: int, amount: int, at: datetime, refunded: int = 0) -> None:
    db.add(
        Order(
            org_id=org_id,
            customer_id=cid,
            platform="p",
            external_id=f"{cid}-{at.isoformat()}-{amount}",
            amount_fen=amount,
            refunded_fen=refunded,
            paid_at=at,
        )
    )


def test_local_day_start() -> None:
    assert local_day_start(date(2026, 1, 1), 480) == datetime(2025, 12, 31, 16, tzinfo=UTC)


def test_roi_report(engine: Engine, db: Session, make_tenant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t, other = make_tenant(), make_tenant()
    a = _customer(db, t.org_id, "douyin", _at(1, 10), clv=5_000)
    _customer(db, t.org_id, "douyin", _at(1, 20))
    c = _customer(db, t.org_id, "taobao", _at(2, 5), clv=700)
    _order(db, t.org_id, a, 10_000, _at(1, 15))
    _order(db, t.org_id, a, 6_000, _at(3, 3), refunded=1_000)  # after the range: still revenue to date
    _order(db, t.org_id, c, 2_000, _at(2, 6))
    db.add_all(
        [
            ChannelCost(
                org_id=t.org_id,
                channel="douyin",
                period_start=date(2026, 1, 1),
                period_end=date(2026, 1, 31),
                cost_fen=31_000,
            ),
            ChannelCost(
                org_id=t.org_id,
                channel="taobao",
                period_start=date(2026, 2, 1),
                period_end=date(2026, 2, 28),
                cost_fen=2_800,
            ),
            ChannelCost(
                org_id=t.org_id,
                channel="wechat_ad",
                dimension=CostDimension.channel,
                period_start=date(2026, 1, 1),
                period_end=date(2026, 1, 31),
                cost_fen=999,
            ),
            ChannelCost(
                org_id=other.org_id,
                channel="douyin",
                period_start=date(2026, 1, 1),
                period_end=date(2026, 1, 31),
                cost_fen=10**9,
            ),
        ]
    )
    db.commit()
    proj = Projection(engine, tmp_path / "roi.duckdb")
    proj.refresh()

    assert prorated_costs(db, t.org_id, CostDimension.source, date(2026, 1, 10), date(2026, 1, 20)) == {
        "douyin": 11_000
    }
    rows = {
        r.channel: r
        for r in roi_report(db, proj.engine, t.org_id, date_from=date(2026, 1, 1), date_to=date(2026, 1, 31))
    }
    # The code-ledger row (wechat_ad) brought nobody in January: by source it lands on the None row.
    assert set(rows) == {"douyin", None} and (rows[None].cost_fen, rows[None].customers) == (999, 0)
    d = rows["douyin"]
    assert (d.cost_fen, d.customers, d.cost_per_customer_fen, d.revenue_fen, d.predicted_clv_fen) == (
        31_000,
        2,
        15_500,
        15_000,
        5_000,
    )
    assert d.roi == pytest.approx((15_000 - 31_000) / 31_000)
    assert d.predicted_roi == pytest.approx((15_000 + 5_000 - 31_000) / 31_000)

    # Half of February: half of taobao's cost; C was acquired on Feb 5.
    rows = {
        r.channel: r
        for r in roi_report(db, proj.engine, t.org_id, date_from=date(2026, 2, 1), date_to=date(2026, 2, 14))
    }
    assert (rows["taobao"].cost_fen, rows["taobao"].customers, rows["taobao"].revenue_fen) == (
        1_400,
        1,
        2_000,
    )
    assert rows["taobao"].roi == pytest.approx(600 / 1_400)

    with pytest.raises(Invalid) as e:
        roi_report(db, proj.engine, t.org_id, date_from=date(2026, 2, 1), date_to=date(2026, 1, 1))
    assert e.value.field == "date_to"
    proj.close()


def test_clv_job_writes_back_and_projects(engine: Engine, db: Session, make_tenant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = make_tenant()
    rng = np.random.default_rng(7)
    start = datetime(2025, 7, 1, tzinfo=UTC)
    as_of = datetime(2026, 6, 30, tzinfo=UTC)
    buyers = []
    for _ in range(60):
        cid = _customer(db, t.org_id, "douyin", start)
        first = start + timedelta(days=int(rng.integers(0, 200)))
        rate = rng.uniform(0.005, 0.05)
        at, n = first, 0
        while at <= as_of and n < 20:
            _order(db, t.org_id, cid, int(rng.integers(2_000, 20_000)), at)
            at += timedelta(days=float(rng.exponential(1 / rate)) + 1)
            n += 1
        buyers.append(cid)
    never = _customer(db, t.org_id, "douyin", start)
    db.commit()
    proj = Projection(engine, tmp_path / "clv.duckdb", min_interval_seconds=0)
    rep = run_clv(db, proj, t.org_id, as_of=as_of)
    db.commit()
    assert rep.buyers == 60 and rep.written == 60 and rep.repeat_buyers >= 2
    stored = {
        cid: (clv, p, e)
        for cid, clv, p, e in db.execute(
            select(Customer.id, Customer.clv_fen, Customer.p_alive, Customer.expected_purchases_365d).where(
                Customer.org_id == t.org_id
            )
        )
    }
    assert stored[never] == (None, None, None)
    for cid in buyers:
        clv, p, e = stored[cid]
        assert clv is not None and clv >= 0 and 0.0 <= p <= 1.0 and e >= 0.0
    assert sum(stored[c][0] for c in buyers) == rep.total_clv_fen

    # The write-back reaches the projection on the next refresh, and the histogram counts every buyer.
    proj.refresh()
    dist = clv_distribution(proj.engine, t.org_id, bins=10)
    assert dist.customers == 60 and dist.total_clv_fen == rep.total_clv_fen
    assert sum(b.customers for b in dist.bins) == 60 and len(dist.bins) <= 10
    proj.close()


def test_clv_job_needs_orders(engine: Engine, db: Session, make_tenant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = make_tenant()
    proj = Projection(engine, tmp_path / "e.duckdb")
    with pytest.raises(Invalid) as e:
        run_clv(db, proj, t.org_id)
    assert e.value.field == "orders"
    proj.close()


def _code(db: Session, org_id: int, pool_id: int, state: str, cost: int, created: datetime) -> None:
    from siyu.channels import service as channels
    from siyu.channels.schemas import CodeIn
    from siyu.integrations.sandbox.channel_codes import SandboxChannelCodes

    code = channels.create_code(
        db,
        org_id,
        CodeIn(name=f"码 {state}", state=state, channel="live", pool_id=pool_id, cost_fen=cost),
        SandboxChannelCodes(),
    )
    code.created_at = created
    db.flush()


def test_code_costs_count_once_and_break_down_by_code_and_account(
    engine: Engine, db: Session, make_tenant, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from siyu.accounts.models import AccountKind
    from siyu.accounts.schemas import AccountIn
    from siyu.accounts.service import create_account
    from siyu.channels import attribution
    from siyu.channels import service as channels
    from siyu.channels.schemas import MemberIn, PoolIn
    from siyu.customers.models import FollowRelation

    t = make_tenant()
    a1, a2 = (
        create_account(db, t.org_id, AccountIn(kind=AccountKind.wecom_member, external_id=x, name=x))
        for x in ("zhang", "li")
    )
    pool = channels.create_pool(db, t.org_id, PoolIn(name="P", members=[MemberIn(account_id=a1.id)]))
    # live: its own cost, a one-off on the day it was created (Jan 5, in the range).
    _code(db, t.org_id, pool.id, "live", 6_000, _at(1, 5))
    # flyer: its own cost is replaced by the channel_costs row naming its state (never both).
    _code(db, t.org_id, pool.id, "flyer", 90_000, _at(1, 2))
    # old: created before the range: its one-off cost belongs to December.
    _code(db, t.org_id, pool.id, "old", 50_000, datetime(2025, 12, 1, 4, tzinfo=UTC))
    db.add(
        ChannelCost(
            org_id=t.org_id,
            channel="flyer",
            dimension=CostDimension.channel,
            period_start=date(2026, 1, 1),
            period_end=date(2026, 1, 31),
            cost_fen=3_100,
        )
    )
    db.add(
        ChannelCost(
            org_id=t.org_id,
            channel="taobao",
            period_start=date(2026, 1, 1),
            period_end=date(2026, 1, 31),
            cost_fen=1_000,
        )
    )
    # (source, state, account, revenue): live brought three douyin customers (two to a1, one to a2)
    # and one taobao customer, whose source has its own cost row (covering that code's share).
    people = [
        ("douyin", "live", a1.id, 10_000),
        ("douyin", "live", a1.id, 0),
        ("douyin", "live", a2.id, 2_000),
        ("taobao", "live", a2.id, 0),
        ("douyin", "flyer", a2.id, 500),
        ("douyin", "lead7", a1.id, 0),  # a state that is no code (a lead's own link)
    ]
    for i, (source, state, account, revenue) in enumerate(people):
        cid = _customer(db, t.org_id, source, _at(1, 10 + i))
        db.add(
            FollowRelation(
                org_id=t.org_id, customer_id=cid, account_id=account, since=_at(1, 10 + i), state=state
            )
        )
        if revenue:
            _order(db, t.org_id, cid, revenue, _at(1, 20))
    db.commit()
    proj = Projection(engine, tmp_path / "codes.duckdb")
    proj.refresh()

    def report(dimension: str) -> dict[str | None, tuple[int, int, int]]:
        rows = roi_report(
            db,
            proj.engine,
            t.org_id,
            date_from=date(2026, 1, 1),
            date_to=date(2026, 1, 31),
            dimension=dimension,
        )
        return {r.channel: (r.cost_fen, r.customers, r.revenue_fen) for r in rows}

    assert report("channel") == {
        "live": (6_000, 4, 12_000),
        "flyer": (3_100, 1, 500),
        "lead7": (0, 1, 0),
    }
    assert report("code") == {"live": (6_000, 4, 12_000), "flyer": (3_100, 1, 500), None: (0, 1, 0)}
    # By source: taobao's own row covers the live customer it holds; the rest of live's cost (3 of its 4
    # customers) and all of flyer's go to douyin, which has no cost row of its own.
    assert report("source") == {"douyin": (4_500 + 3_100, 5, 12_500), "taobao": (1_000, 1, 0)}
    # By account, the same total (8,600 fen), shared by the customers each account received.
    assert report("account") == {
        str(a1.id): (3_000, 3, 10_000),
        str(a2.id): (1_500 + 3_100 + 1_000, 3, 2_500),
    }
    # The channels report reads the same code ledger.
    by_state = {
        r.state: r.cost_fen
        for r in attribution.code_report(
            db,
            t.org_id,
            date(2026, 1, 1),
            date(2026, 1, 31),
            code_costs(db, t.org_id, date(2026, 1, 1), date(2026, 1, 31)),
        )
    }
    assert by_state == {"live": 6_000, "flyer": 3_100, "old": 0}
    december = attribution.code_report(
        db,
        t.org_id,
        date(2025, 12, 1),
        date(2025, 12, 31),
        code_costs(db, t.org_id, date(2025, 12, 1), date(2025, 12, 31)),
    )
    assert {r.state: r.cost_fen for r in december}["old"] == 50_000
    with pytest.raises(Invalid) as e:
        roi_report(
            db, proj.engine, t.org_id, date_from=date(2026, 1, 1), date_to=date(2026, 1, 2), dimension="x"
        )
    assert e.value.field == "dimension"
    proj.close()
