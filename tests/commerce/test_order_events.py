"""Orders leave order_paid / order_refunded events, and those move the customer's stage by the rules."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from siyu.commerce.importers import import_orders_csv
from siyu.commerce.models import Order
from siyu.customers.models import Customer, Stage
from siyu.events.models import Event


def _events(db: Session, org_id: int, *types: str) -> list[Event]:
    db.expire_all()
    return list(
        db.scalars(select(Event).where(Event.org_id == org_id, Event.type.in_(types)).order_by(Event.id))
    )


def _stage(db: Session, customer_id: int) -> Stage:
    db.expire_all()
    customer = db.get(Customer, customer_id)
    assert customer is not None
    return customer.stage


def _order(client: Any, tenant: Any, external_id: str, amount: int, refunded: int = 0) -> dict[str, Any]:
    body = {
        "platform": "youzan",
        "external_id": external_id,
        "identity": {"kind": "mobile", "value": "13800138000"},
        "amount_fen": amount,
        "refunded_fen": refunded,
        "paid_at": "2024-06-01T12:00:00Z",
    }
    response = client.post("/api/v1/orders", json=body, headers=tenant.auth())
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def test_orders_api_moves_the_stage_through_events(client, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    first = _order(client, tenant, "YZ-1", 1990)
    cid = first["customer_id"]
    assert _stage(db, cid) == Stage.converted
    (paid,) = _events(db, tenant.org_id, "order_paid")
    assert paid.idempotency_key == f"order_paid:{first['id']}" and paid.customer_id == cid
    assert paid.properties == {"order_id": first["id"], "platform": "youzan", "amount_fen": 1990}

    second = _order(client, tenant, "YZ-2", 5000)
    assert _stage(db, cid) == Stage.repeat
    _order(client, tenant, "YZ-2", 5000)  # posted again: nothing new happened
    assert len(_events(db, tenant.org_id, "order_paid", "order_refunded")) == 2

    _order(client, tenant, "YZ-2", 5000, refunded=1000)  # a partial refund keeps the order paid
    assert _stage(db, cid) == Stage.repeat
    _order(client, tenant, "YZ-2", 5000, refunded=5000)
    assert _stage(db, cid) == Stage.converted
    refunds = _events(db, tenant.org_id, "order_refunded")
    assert [(e.idempotency_key, e.properties["refunded_fen"]) for e in refunds] == [
        (f"order_refunded:{second['id']}:1000", 1000),
        (f"order_refunded:{second['id']}:5000", 5000),
    ]
    assert refunds[-1].properties == {"order_id": second["id"], "refunded_fen": 5000, "amount_fen": 5000}
    changes = _events(db, tenant.org_id, "stage_changed")
    assert [(e.properties["to"], e.properties["reason"]) for e in changes] == [
        ("converted", "rule: order_paid"),
        ("repeat", "rule: order_paid"),
        ("converted", "rule: order_refunded"),
    ]


def _csv(*rows: str) -> bytes:
    head = "platform,order_id,mobile,amount_yuan,paid_at,refunded_yuan"
    return "\n".join([head, *rows]).encode("utf-8")


def test_csv_import_writes_one_batch_of_events_and_moves_stages(engine: Engine, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    one = "jd,JD-1,13800138000,99.80,2024-06-01 12:00:00,"
    import_orders_csv(engine, tenant.org_id, _csv(one), "generic")
    buyer = db.scalar(select(Order.customer_id).where(Order.external_id == "JD-1"))
    assert buyer is not None and _stage(db, buyer) == Stage.converted
    both = _csv(
        one,
        "jd,JD-2,13800138000,20.00,2024-06-03 12:00:00,",
        "jd,JD-3,13900000000,10.00,2024-06-03 12:00:00,10.00",  # arrives fully refunded
    )
    import_orders_csv(engine, tenant.org_id, both, "generic")
    assert _stage(db, buyer) == Stage.repeat
    other = db.scalar(select(Order.customer_id).where(Order.external_id == "JD-3"))
    assert other is not None and _stage(db, other) == Stage.new
    assert [
        (e.type, e.properties.get("refunded_fen")) for e in _events(db, tenant.org_id, "order_refunded")
    ] == [("order_refunded", 1000)]
    import_orders_csv(engine, tenant.org_id, both, "generic")  # the same file again adds nothing
    assert len(_events(db, tenant.org_id, "order_paid")) == 3
    refunded = _csv(one, "jd,JD-2,13800138000,20.00,2024-06-03 12:00:00,20.00")
    report = import_orders_csv(engine, tenant.org_id, refunded, "generic")
    assert report.updated == 1
    assert _stage(db, buyer) == Stage.converted
    paid_at = {e.properties["order_id"]: e.occurred_at for e in _events(db, tenant.org_id, "order_paid")}
    jd1 = db.scalar(select(Order).where(Order.external_id == "JD-1"))
    assert jd1 is not None and paid_at[jd1.id] == jd1.paid_at
