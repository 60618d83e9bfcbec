"""Writes and idempotent replays see what reads see: an operator can neither append to, nor learn about,
nor change through a replay, a customer, event or order of a customer their accounts do not follow."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.accounts.models import Account, AccountKind
from siyu.commerce.models import Order
from siyu.customers.models import Customer, CustomerIdentity, FollowRelation
from siyu.events.models import Event

T0 = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)
HIDDEN_MOBILE = "13800001111"


@dataclass
class Scene:
    mine: int
    hidden: int
    account: int


@pytest.fixture
def scene(client, tenant, db: Session) -> Scene:  # type: ignore[no-untyped-def]
    """The operator follows `mine` through their account; `hidden` has a mobile, an event and an order."""
    mine, hidden = Customer(org_id=tenant.org_id, name="我的"), Customer(org_id=tenant.org_id, name="别人的")
    account = Account(
        org_id=tenant.org_id,
        kind=AccountKind.wecom_member,
        external_id="li",
        name="李",
        operator_id=tenant.operator_id,
    )
    db.add_all([mine, hidden, account])
    db.flush()
    db.add(FollowRelation(org_id=tenant.org_id, customer_id=mine.id, account_id=account.id))
    db.add(CustomerIdentity(org_id=tenant.org_id, customer_id=hidden.id, kind="mobile", value=HIDDEN_MOBILE))
    db.commit()
    secret = _event("secret", hidden.id, properties={"text": "只有管理员能看"})
    assert client.post("/api/v1/events", json=secret, headers=tenant.auth()).status_code == 201
    order = _order("T-1", customer_id=hidden.id)
    assert client.post("/api/v1/orders", json=order, headers=tenant.auth()).status_code == 201
    return Scene(mine.id, hidden.id, account.id)


def _event(key: str, customer_id: int | None = None, **extra: object) -> dict[str, object]:
    return {
        "type": "message.received",
        "customer_id": customer_id,
        "idempotency_key": key,
        "occurred_at": T0.isoformat(),
        **extra,
    }


def _order(external_id: str, **extra: object) -> dict[str, object]:
    return {
        "platform": "taobao",
        "external_id": external_id,
        "amount_fen": 9900,
        "paid_at": T0.isoformat(),
        **extra,
    }


def _events(db: Session) -> int:
    db.expire_all()
    return int(db.scalar(select(func.count()).select_from(Event)) or 0)


def test_operator_cannot_append_events_to_hidden_customers(client, tenant, db, scene: Scene) -> None:  # type: ignore[no-untyped-def]
    op = tenant.auth("operator")
    before = _events(db)
    hidden = client.post("/api/v1/events", json=_event("e1", scene.hidden), headers=op)
    missing = client.post("/api/v1/events", json=_event("e1", scene.hidden + 1000), headers=op)
    assert hidden.status_code == missing.status_code == 422
    assert hidden.json()["field"] == "customer_id"
    # A hidden customer answers exactly as one that does not exist.
    assert hidden.json()["detail"].replace(str(scene.hidden), "N") == missing.json()["detail"].replace(
        str(scene.hidden + 1000), "N"
    )
    batch = client.post(
        "/api/v1/events/batch",
        json={"events": [_event("e2", scene.mine), _event("e3", scene.hidden)]},
        headers=op,
    )
    assert batch.status_code == 422 and batch.json()["field"] == "events[1].customer_id"
    assert _events(db) == before
    # The customer they follow still takes events, and its replay answers 200.
    mine = client.post("/api/v1/events", json=_event("e4", scene.mine), headers=op)
    assert mine.status_code == 201, mine.text
    assert client.post("/api/v1/events", json=_event("e4", scene.mine), headers=op).status_code == 200


def test_identity_lookup_reveals_no_hidden_customer(client, tenant, db, scene: Scene) -> None:  # type: ignore[no-untyped-def]
    op = tenant.auth("operator")
    before = _events(db)
    by_mobile = _event("m1", identity={"kind": "mobile", "value": HIDDEN_MOBILE})
    response = client.post("/api/v1/events", json=by_mobile, headers=op)
    assert response.status_code == 404 and response.json()["field"] == "identity.value"
    assert str(scene.hidden) not in response.text
    unknown = client.post(
        "/api/v1/events", json=_event("m2", identity={"kind": "mobile", "value": "13900002222"}), headers=op
    )
    assert unknown.json() == response.json()  # "nobody" and "someone you cannot see" look the same
    batch = client.post("/api/v1/events/batch", json={"events": [by_mobile]}, headers=op)
    assert batch.status_code == 404 and batch.json()["field"] == "events[0].identity.value"
    order = client.post(
        "/api/v1/orders", json=_order("T-2", identity={"kind": "mobile", "value": HIDDEN_MOBILE}), headers=op
    )
    assert order.status_code == 404 and str(scene.hidden) not in order.text
    assert _events(db) == before
    # An admin's identity lookup still finds the customer.
    admin = client.post("/api/v1/events", json=by_mobile, headers=tenant.auth())
    assert admin.status_code == 201 and admin.json()["customer_id"] == scene.hidden


def test_replaying_a_hidden_events_key_does_not_return_it(client, tenant, scene: Scene) -> None:  # type: ignore[no-untyped-def]
    replay = client.post("/api/v1/events", json=_event("secret", scene.mine), headers=tenant.auth("operator"))
    assert replay.status_code == 404, replay.text
    assert "只有管理员能看" not in replay.text and str(scene.hidden) not in replay.text
    admin = client.post("/api/v1/events", json=_event("secret", scene.mine), headers=tenant.auth())
    assert admin.status_code == 200 and admin.json()["customer_id"] == scene.hidden


def test_reposting_a_hidden_order_changes_nothing(client, tenant, db, scene: Scene) -> None:  # type: ignore[no-untyped-def]
    op = tenant.auth("operator")
    refund = client.post(
        "/api/v1/orders", json=_order("T-1", customer_id=scene.mine, refunded_fen=9900), headers=op
    )
    assert refund.status_code == 404 and refund.json()["field"] == "external_id"
    db.expire_all()
    order = db.scalar(select(Order).where(Order.external_id == "T-1"))
    assert order is not None and order.refunded_fen == 0 and order.customer_id == scene.hidden
    hidden_buyer = client.post("/api/v1/orders", json=_order("T-3", customer_id=scene.hidden), headers=op)
    assert hidden_buyer.status_code == 422 and hidden_buyer.json()["field"] == "customer_id"
    # Their own customer's order goes through, and its refund can be posted again.
    assert (
        client.post("/api/v1/orders", json=_order("T-4", customer_id=scene.mine), headers=op).status_code
        == 201
    )
    again = client.post(
        "/api/v1/orders", json=_order("T-4", customer_id=scene.mine, refunded_fen=100), headers=op
    )
    assert again.status_code == 200 and again.json()["refunded_fen"] == 100
