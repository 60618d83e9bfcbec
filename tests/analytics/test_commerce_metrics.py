"""Commerce metrics on a small hand-computed dataset, overall, by source, by month, by operator and by date range."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from siyu.accounts.models import Account, AccountKind
from siyu.analytics.commerce import commerce_metrics
from siyu.analytics.projection import Projection
from siyu.commerce.models import Order, OrderItem
from siyu.customers.models import Customer, FollowRelation
from siyu.kit.errors import Invalid


def _at(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 4, 0, tzinfo=UTC)  # noon in Shanghai: the local month is unambiguous


def _order(
    db: Session, org_id: int, cid: int, amount: int, at: datetime, cost: int | None, refunded: int = 0
) -> None:
    o = Order(
        org_id=org_id,
        customer_id=cid,
        platform="taobao",
        external_id=f"{cid}-{at.isoformat()}",
        amount_fen=amount,
        refunded_fen=refunded,
        paid_at=at,
    )
    db.add(o)
    db.flush()
    # Two lines: the cost is known only when both carry a unit cost.
    db.add(
        OrderItem(
            order_id=o.id,
            name="a",
            quantity=1,
            unit_price_fen=amount // 2,
            unit_cost_fen=None if cost is None else cost // 2,
        )
    )
    db.add(
        OrderItem(
            order_id=o.id,
            name="b",
            quantity=1,
            unit_price_fen=amount - amount // 2,
            unit_cost_fen=None if cost is None else cost - cost // 2,
        )
    )


@pytest.fixture
def world(engine: Engine, db: Session, make_tenant, tmp_path: Path):  # type: ignore[no-untyped-def]
    t, other = make_tenant(), make_tenant()
    acct = Account(
        org_id=t.org_id, kind=AccountKind.wecom_member, external_id="w1", name="W", operator_id=t.operator_id
    )
    db.add(acct)
    cs = {}
    for name, source, created in (
        ("A", "douyin", _at(1, 10)),
        ("B", "douyin", _at(1, 20)),
        ("C", "taobao", _at(2, 5)),
        ("D", "taobao", _at(2, 6)),
    ):
        c = Customer(org_id=t.org_id, name=name, source=source, created_at=created)
        db.add(c)
        db.flush()
        cs[name] = c.id
    db.add(
        FollowRelation(org_id=t.org_id, customer_id=cs["A"], account_id=acct.id, since=_at(1, 10), state="c1")
    )
    _order(db, t.org_id, cs["A"], 10_000, _at(1, 15), 4_000)
    _order(db, t.org_id, cs["A"], 6_000, _at(2, 3), None, refunded=1_000)
    _order(db, t.org_id, cs["C"], 20_000, _at(2, 10), 8_000, refunded=20_000)
    for day in ((2, 7), (2, 8), (3, 1)):
        _order(db, t.org_id, cs["D"], 3_000, _at(*day), 1_000)
    # Another organization's buyer must never show up.
    x = Customer(org_id=other.org_id, source="douyin", created_at=_at(1, 11))
    db.add(x)
    db.flush()
    _order(db, other.org_id, x.id, 99_999, _at(1, 12), 1)
    db.commit()
    proj = Projection(engine, tmp_path / "c.duckdb")
    proj.refresh()
    yield t, proj
    proj.close()


def test_overall(world) -> None:  # type: ignore[no-untyped-def]
    t, proj = world
    [row] = commerce_metrics(proj.engine, t.org_id)
    assert (row.customers, row.buyers, row.repeat_buyers) == (4, 3, 2)
    assert row.first_order_conversion == 0.75
    assert row.repurchase_rate == pytest.approx(2 / 3)
    assert (row.orders, row.revenue_fen, row.refunded_fen, row.net_revenue_fen) == (6, 45_000, 21_000, 24_000)
    assert row.aov_fen == 7_500
    assert row.refund_rate == pytest.approx(21_000 / 45_000)
    # Cost known on 5 orders: 4000 + 8000 + 3 * 1000; their net 10000 + 0 + 9000.
    assert (row.cost_known_orders, row.cost_fen, row.gross_margin_fen) == (5, 15_000, 4_000)
    assert row.gross_margin_rate == pytest.approx(4_000 / 19_000)


def test_by_source(world) -> None:  # type: ignore[no-untyped-def]
    t, proj = world
    rows = {r.group: r for r in commerce_metrics(proj.engine, t.org_id, by="source")}
    assert set(rows) == {"douyin", "taobao"}
    d, tb = rows["douyin"], rows["taobao"]
    assert (d.customers, d.buyers, d.repeat_buyers, d.orders, d.revenue_fen, d.refunded_fen) == (
        2,
        1,
        1,
        2,
        16_000,
        1_000,
    )
    assert (d.cost_fen, d.gross_margin_fen) == (4_000, 6_000)
    assert (tb.customers, tb.buyers, tb.repeat_buyers, tb.orders, tb.revenue_fen, tb.refunded_fen) == (
        2,
        2,
        1,
        4,
        29_000,
        20_000,
    )
    assert (tb.cost_fen, tb.gross_margin_fen) == (11_000, -2_000)


def test_by_month_uses_acquisition_and_payment_months(world) -> None:  # type: ignore[no-untyped-def]
    t, proj = world
    rows = {r.group: r for r in commerce_metrics(proj.engine, t.org_id, by="month")}
    assert set(rows) == {"2026-01", "2026-02", "2026-03"}
    assert (
        rows["2026-01"].customers,
        rows["2026-01"].buyers,
        rows["2026-01"].orders,
        rows["2026-01"].revenue_fen,
    ) == (2, 1, 1, 10_000)
    assert (
        rows["2026-02"].customers,
        rows["2026-02"].buyers,
        rows["2026-02"].orders,
        rows["2026-02"].revenue_fen,
    ) == (2, 2, 4, 32_000)
    assert (rows["2026-03"].customers, rows["2026-03"].orders, rows["2026-03"].revenue_fen) == (0, 1, 3_000)
    assert rows["2026-03"].first_order_conversion is None


def test_by_operator_and_date_range(world) -> None:  # type: ignore[no-untyped-def]
    t, proj = world
    rows = {r.group: r for r in commerce_metrics(proj.engine, t.org_id, by="operator_id")}
    assert rows[t.operator_id].orders == 2 and rows[None].orders == 4
    [feb] = commerce_metrics(proj.engine, t.org_id, date_from=_at(2, 1).replace(hour=0), date_to=_at(4, 1))
    assert (feb.customers, feb.buyers, feb.orders, feb.revenue_fen) == (2, 2, 5, 35_000)


def test_bad_group_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    t, proj = world
    with pytest.raises(Invalid) as e:
        commerce_metrics(proj.engine, t.org_id, by="tags")
    assert e.value.field == "by"
