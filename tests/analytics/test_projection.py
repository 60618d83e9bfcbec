"""The DuckDB projection: incremental refreshes equal a full rebuild after inserts, updates, refunds and merges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from siyu.accounts.models import Account, AccountKind
from siyu.analytics.projection import Projection, default_path
from siyu.commerce.models import Order, OrderItem
from siyu.customers.merge import merge_customers
from siyu.customers.models import Customer, FollowRelation, Stage
from siyu.events.models import Event

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _customer(db: Session, org_id: int, source: str | None = "douyin", **kw: object) -> Customer:
    c = Customer(org_id=org_id, source=source, created_at=kw.pop("created_at", T0), **kw)
    db.add(c)
    db.flush()
    return c


def _event(db: Session, org_id: int, customer_id: int, kind: str, at: datetime, **props: str) -> None:
    db.add(
        Event(
            org_id=org_id,
            customer_id=customer_id,
            type=kind,
            occurred_at=at,
            properties=props,
            idempotency_key=f"{customer_id}-{kind}-{at.isoformat()}-{len(props)}",
        )
    )


def _order(
    db: Session,
    org_id: int,
    customer_id: int,
    amount: int,
    at: datetime,
    *,
    cost: int | None = None,
    refunded: int = 0,
    order_id: int | None = None,
) -> Order:
    o = Order(
        id=order_id,
        org_id=org_id,
        customer_id=customer_id,
        platform="taobao",
        external_id=f"x{order_id}" if order_id else f"o{customer_id}-{at.timestamp()}",
        amount_fen=amount,
        refunded_fen=refunded,
        paid_at=at,
    )
    db.add(o)
    db.flush()
    db.add(OrderItem(order_id=o.id, name="tea", quantity=1, unit_price_fen=amount, unit_cost_fen=cost))
    return o


def _snapshot(p: Projection) -> dict[str, list[tuple[object, ...]]]:
    return {
        "events": p.query("SELECT * FROM events ORDER BY event_id", refresh=False),
        "orders": p.query("SELECT * FROM orders ORDER BY order_id", refresh=False),
        "customers": p.query("SELECT * FROM customers ORDER BY customer_id", refresh=False),
        "customer_values": p.query("SELECT * FROM customer_values ORDER BY customer_id", refresh=False),
        "event_type_counts": p.query("SELECT * FROM event_type_counts ORDER BY ALL", refresh=False),
        "buyer_totals": p.query("SELECT * FROM buyer_totals ORDER BY ALL", refresh=False),
    }


def _buyers(p: Projection) -> list[tuple[object, ...]]:
    """What the maintained buyer totals must equal: a GROUP BY over the projected orders."""
    return p.query(
        "SELECT org_id, customer_id, count(*), sum(amount_fen - refunded_fen), max(paid_at) FROM orders "
        "GROUP BY ALL ORDER BY ALL",
        refresh=False,
    )


def _counted(p: Projection) -> list[tuple[object, ...]]:
    """What the maintained counts must equal: a GROUP BY over the projected events."""
    return p.query("SELECT org_id, event_type, count(*) FROM events GROUP BY ALL ORDER BY ALL", refresh=False)


def test_default_path_is_beside_the_database(tmp_path: Path) -> None:
    assert default_path(tmp_path) == tmp_path / "analytics.duckdb"


def test_incremental_equals_rebuild(engine: Engine, db: Session, make_tenant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = make_tenant()
    acct = Account(
        org_id=t.org_id,
        kind=AccountKind.wecom_member,
        external_id="zhangsan",
        name="Zhang",
        operator_id=t.operator_id,
    )
    db.add(acct)
    a = _customer(db, t.org_id, "douyin")
    b = _customer(db, t.org_id, "taobao")
    db.add(
        FollowRelation(org_id=t.org_id, customer_id=a.id, account_id=acct.id, since=T0, state="code-spring")
    )
    _event(db, t.org_id, a.id, "customer_added", T0)
    _event(db, t.org_id, b.id, "customer_added", T0 + timedelta(hours=1), channel="live")
    o1 = _order(db, t.org_id, a.id, 10_000, T0 + timedelta(days=1), cost=4_000)
    db.commit()

    inc = Projection(engine, tmp_path / "inc.duckdb", min_interval_seconds=0)
    first = inc.refresh()
    assert (first.events, first.orders, first.customers) == (2, 1, 2)
    dims = {
        r[0]: r[1:]
        for r in inc.query(
            "SELECT customer_id, source, channel, stage, account_id, operator_id FROM customers",
            refresh=False,
        )
    }
    assert dims[a.id] == ("douyin", "code-spring", "new", acct.id, t.operator_id)
    assert dims[b.id] == ("taobao", None, "new", None, None)
    assert inc.query(f"SELECT cost_fen FROM orders WHERE order_id = {o1.id}", refresh=False) == [(4000,)]

    # Nothing changed: a refresh writes nothing.
    again = inc.refresh()
    assert not again.events and not again.orders and not again.refunds_resynced

    # Inserts, a dimension update, a refund, a new follow relation and a merge.
    c = _customer(db, t.org_id, "wechat_ad")
    _event(db, t.org_id, c.id, "customer_added", T0 + timedelta(days=2))
    _event(db, t.org_id, b.id, "order_paid", T0 + timedelta(days=3))
    _order(db, t.org_id, b.id, 5_000, T0 + timedelta(days=3))
    db.add(
        FollowRelation(
            org_id=t.org_id,
            customer_id=b.id,
            account_id=acct.id,
            since=T0 + timedelta(days=3),
            state="code-b",
        )
    )
    db.get(Customer, a.id).stage = Stage.converted  # type: ignore[union-attr]
    db.execute(update(Order).where(Order.id == o1.id).values(refunded_fen=2_500))
    db.commit()
    merge_customers(db, t.org_id, b.id, c.id, "same person")
    db.commit()

    step = inc.refresh()
    assert (
        step.events == 3 and step.orders == 1 and step.merged >= 1 and step.refunds_resynced == 1
    )  # two events and the merge's customer_merged
    full = Projection(engine, tmp_path / "full.duckdb")
    full.rebuild()
    assert _snapshot(inc) == _snapshot(full)
    snap = _snapshot(inc)
    assert {r[2] for r in snap["events"]} == {a.id, b.id}  # c's events now belong to b
    assert all(r[1] != c.id for r in snap["customers"])

    assert snap["event_type_counts"] == _counted(inc)
    assert snap["buyer_totals"] == _buyers(inc)
    # Rebuild of the incremental file starts over and lands on the same rows.
    inc.rebuild()
    assert _snapshot(inc) == snap
    assert inc.watermarks()["events_id"] == full.watermarks()["events_id"]
    inc.close()
    full.close()


def test_watermark_survives_reopen_and_failed_refresh_rolls_back(
    engine: Engine,
    db: Session,
    make_tenant,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    t = make_tenant()
    a = _customer(db, t.org_id)
    for i in range(5):
        _event(db, t.org_id, a.id, "viewed", T0 + timedelta(minutes=i))
    db.commit()
    path = tmp_path / "a.duckdb"
    p = Projection(engine, path, chunk_size=2)  # several chunks in one transaction
    assert p.refresh().events == 5
    wm = p.watermarks()
    p.close()

    _event(db, t.org_id, a.id, "viewed", T0 + timedelta(hours=1))
    db.commit()
    p = Projection(engine, path, min_interval_seconds=0)
    # A refresh that dies half-way (here: after the events are loaded) leaves rows and watermarks as they were.
    original = p._resync_refunds

    def boom(*args: object, **kw: object) -> None:
        raise RuntimeError("crash")

    p._resync_refunds = boom  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        p.refresh()
    assert p.watermarks() == wm
    assert p.query("SELECT count(*) FROM events", refresh=False) == [(5,)]
    p._resync_refunds = original  # type: ignore[method-assign]
    assert p.refresh().events == 1
    assert p.query("SELECT count(*) FROM events", refresh=False) == [(6,)]
    p.close()


def test_event_type_counts_follow_overlapping_refreshes_and_are_backfilled(
    engine: Engine,
    db: Session,
    make_tenant,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """Re-read ids (the overlap PostgreSQL needs) are counted once; a file made before the counts gets them."""
    t = make_tenant()
    a = _customer(db, t.org_id)
    for i in range(5):
        _event(db, t.org_id, a.id, "viewed" if i % 2 else "clicked", T0 + timedelta(minutes=i))
    db.commit()
    path = tmp_path / "c.duckdb"
    p = Projection(engine, path, chunk_size=2, id_overlap=3, min_interval_seconds=0)
    p.refresh()
    _event(db, t.org_id, a.id, "viewed", T0 + timedelta(hours=1))
    _event(db, t.org_id, a.id, "ordered", T0 + timedelta(hours=2))
    db.commit()
    assert p.refresh().events == 2
    assert p.refresh().events == 0
    assert p.event_types(t.org_id) == [("clicked", 3), ("viewed", 3), ("ordered", 1)]
    assert p.query("SELECT * FROM event_type_counts ORDER BY ALL", refresh=False) == _counted(p)

    p.engine.con.execute("DROP TABLE event_type_counts")
    p.close()
    reopened = Projection(engine, path)
    assert reopened.event_types(t.org_id, refresh=False) == [("clicked", 3), ("viewed", 3), ("ordered", 1)]
    reopened.close()


def test_buyer_totals_follow_orders_refunds_and_merges_and_are_backfilled(
    engine: Engine,
    db: Session,
    make_tenant,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """Refresh by refresh, the totals per buyer equal a GROUP BY over the projected orders, and a rebuild's."""
    t = make_tenant()
    a, b, c = (_customer(db, t.org_id) for _ in range(3))
    _order(db, t.org_id, b.id, 3_000, T0 + timedelta(days=1), refunded=1_000)
    o1 = _order(db, t.org_id, a.id, 10_000, T0)
    db.commit()
    path = tmp_path / "b.duckdb"
    p = Projection(engine, path, id_overlap=1, min_interval_seconds=0)
    p.refresh()
    assert p.query("SELECT * FROM buyer_totals ORDER BY ALL", refresh=False) == _buyers(p)

    # A second order for a (the overlap re-reads a's first), a refund on a's first, b's refund cleared.
    _order(db, t.org_id, a.id, 2_000, T0 + timedelta(days=5))
    db.execute(update(Order).where(Order.id == o1.id).values(refunded_fen=4_000))
    db.execute(update(Order).where(Order.customer_id == b.id).values(refunded_fen=0))
    db.commit()
    p.refresh()
    rows = p.query("SELECT customer_id, orders, net_fen FROM buyer_totals ORDER BY ALL", refresh=False)
    assert rows == [(a.id, 2, 8_000), (b.id, 1, 3_000)]

    # b's order moves to c, who had none: b has no row left, c has b's.
    _order(db, t.org_id, c.id, 500, T0 + timedelta(days=9))
    db.commit()
    merge_customers(db, t.org_id, c.id, b.id, "same person")
    db.commit()
    p.refresh()
    assert p.query("SELECT * FROM buyer_totals ORDER BY ALL", refresh=False) == _buyers(p)
    rows = p.query("SELECT customer_id, orders, net_fen FROM buyer_totals ORDER BY ALL", refresh=False)
    assert rows == [(a.id, 2, 8_000), (c.id, 2, 3_500)]
    assert p.buyers_sql(t.org_id, T0 + timedelta(days=9)) is not None
    assert p.buyers_sql(t.org_id, T0 + timedelta(days=8)) is None  # c's last order is later
    full = Projection(engine, tmp_path / "full.duckdb")
    full.rebuild()
    assert _snapshot(p) == _snapshot(full)
    full.close()

    p.engine.con.execute("DROP TABLE buyer_totals")
    p.close()
    reopened = Projection(engine, path)
    assert reopened.query("SELECT * FROM buyer_totals ORDER BY ALL", refresh=False) == _buyers(reopened)
    reopened.close()


def test_remembered_rows_last_until_a_refresh_writes(
    engine: Engine,
    db: Session,
    make_tenant,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    t = make_tenant()
    a = _customer(db, t.org_id)
    _order(db, t.org_id, a.id, 1_000, T0)
    db.commit()
    p = Projection(engine, tmp_path / "m.duckdb", min_interval_seconds=0)
    sql = f"SELECT customer_id, net_fen FROM buyer_totals WHERE org_id = {t.org_id} ORDER BY ALL"
    with p.remembering() as eng:
        assert eng.query(sql) == [(a.id, 1_000)]
    # Written behind the projection's back: a remembered read does not see it, which shows it is remembered.
    p.engine.con.execute("UPDATE buyer_totals SET net_fen = 7")
    with p.remembering() as eng:  # the refresh writes nothing
        assert eng.query(sql) == [(a.id, 1_000)]
    _order(db, t.org_id, a.id, 500, T0 + timedelta(days=1))
    db.commit()
    with p.remembering() as eng:  # the refresh writes the order: rows are read again
        assert eng.query(sql) == [(a.id, 1_500)]
    p.close()


def test_refresh_is_throttled(engine: Engine, db: Session, make_tenant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = make_tenant()
    a = _customer(db, t.org_id)
    db.commit()
    p = Projection(engine, tmp_path / "t.duckdb", min_interval_seconds=3600)
    assert not p.refresh().skipped
    _event(db, t.org_id, a.id, "viewed", T0)
    db.commit()
    assert p.refresh().skipped
    assert p.refresh(force=True).events == 1
    p.close()


def test_future_stamped_profile_does_not_hide_later_updates(
    engine: Engine,
    db: Session,
    make_tenant,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    t = make_tenant()
    skewed = _customer(db, t.org_id, "douyin")
    plain = _customer(db, t.org_id, "taobao")
    db.commit()
    db.execute(
        update(Customer)
        .where(Customer.id == skewed.id)
        .values(updated_at=datetime.now(UTC) + timedelta(days=2))
    )
    db.commit()
    p = Projection(engine, tmp_path / "f.duckdb", min_interval_seconds=0)
    p.refresh()
    db.get(Customer, plain.id).stage = Stage.engaged  # type: ignore[union-attr]
    db.commit()
    p.refresh()
    assert p.query(f"SELECT stage FROM customers WHERE customer_id = {plain.id}", refresh=False) == [
        ("engaged",)
    ]
    p.close()


def test_late_commits_in_the_overlap_are_projected_and_unchanged_rows_not_read_again(
    engine: Engine,
    db: Session,
    make_tenant,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """Ids that commit after a higher one (PostgreSQL) land in the projection; rows already there are not
    read again, and the result equals a rebuild."""
    t = make_tenant()
    a = _customer(db, t.org_id)
    for i in (10, 12, 13):
        db.add(
            Event(
                id=i,
                org_id=t.org_id,
                customer_id=a.id,
                type="viewed",
                occurred_at=T0,
                idempotency_key=f"e{i}",
            )
        )
    _order(db, t.org_id, a.id, 5, T0, order_id=20)
    _order(db, t.org_id, a.id, 7, T0, order_id=22)
    db.commit()
    p = Projection(engine, tmp_path / "late.duckdb", id_overlap=5, min_interval_seconds=0)
    assert (p.refresh().events, p.watermarks()["events_id"]) == (3, 13)

    # Committed late: ids below the watermarks.
    db.add(
        Event(
            id=11,
            org_id=t.org_id,
            customer_id=a.id,
            type="clicked",
            occurred_at=T0,
            properties={"k": "v"},
            idempotency_key="e11",
        )
    )
    _order(db, t.org_id, a.id, 9, T0, order_id=21)
    db.commit()
    read: list[int] = []
    load = p._load_appended

    def spy(kind: str, table: object, rows: list[tuple[object, ...]], *, full: bool) -> None:
        read.extend(int(r[0]) for r in rows)  # type: ignore[call-overload]
        load(kind, table, rows, full=full)  # type: ignore[arg-type]

    p._load_appended = spy  # type: ignore[method-assign,assignment]
    step = p.refresh()
    assert (step.events, step.orders, sorted(read)) == (1, 1, [11, 21])
    read.clear()
    assert (p.refresh().events, read) == (0, [])
    full = Projection(engine, tmp_path / "late-full.duckdb")
    full.rebuild()
    assert _snapshot(p) == _snapshot(full)
    p.close()
    full.close()


def test_refunds_after_refreshes_without_new_orders_are_resynced(
    engine: Engine,
    db: Session,
    make_tenant,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """A refresh without new orders compares the operational refunded total with the one the last refresh
    left: a refund (and its reversal) still lands, the same as a rebuild."""
    t = make_tenant()
    a = _customer(db, t.org_id)
    o = _order(db, t.org_id, a.id, 10_000, T0)
    db.commit()
    p = Projection(engine, tmp_path / "r.duckdb", min_interval_seconds=0)
    p.refresh()
    assert p.refresh().refunds_resynced == 0
    for refunded in (3_000, 0, 10_000):
        db.execute(update(Order).where(Order.id == o.id).values(refunded_fen=refunded))
        db.commit()
        assert p.refresh().refunds_resynced == 1
        assert p.refresh().refunds_resynced == 0
        assert p.query(f"SELECT refunded_fen FROM orders WHERE order_id = {o.id}", refresh=False) == [
            (refunded,)
        ]
    full = Projection(engine, tmp_path / "r-full.duckdb")
    full.rebuild()
    assert _snapshot(p) == _snapshot(full)
    p.close()
    full.close()


def test_memoized_funnel_holds_until_a_refresh_commits(
    engine: Engine,
    db: Session,
    make_tenant,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A funnel is computed once per projected state: new events make the next refresh recompute it."""
    from siyu.analytics import service
    from siyu.analytics.schemas import FunnelIn, StepIn

    t = make_tenant()
    a, b = _customer(db, t.org_id), _customer(db, t.org_id)
    _event(db, t.org_id, a.id, "viewed", T0)
    _event(db, t.org_id, a.id, "ordered", T0 + timedelta(hours=1))
    _event(db, t.org_id, b.id, "viewed", T0)
    db.commit()
    p = Projection(engine, tmp_path / "m.duckdb", min_interval_seconds=0)
    body = FunnelIn(steps=[StepIn(event_type="viewed"), StepIn(event_type="ordered")])
    runs: list[object] = []
    run = service.run_funnel
    monkeypatch.setattr(service, "run_funnel", lambda e, q: runs.append(q) or run(e, q))

    def counts() -> list[int]:
        with p.locked() as eng:
            return [s.count for s in service.funnel(eng, t.org_id, body, memo=p)[0].steps]

    assert counts() == [2, 1]
    assert counts() == [2, 1]  # nothing new: the refresh commits nothing, the result is reused
    assert len(runs) == 1
    _event(db, t.org_id, b.id, "ordered", T0 + timedelta(hours=2))
    db.commit()
    assert counts() == [2, 2]
    assert len(runs) == 2
    p.close()
