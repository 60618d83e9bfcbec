"""Lifecycle stages move by rules on events, can be set by hand with a reason, and replay from the log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.accounts.models import AccountKind
from siyu.accounts.schemas import AccountIn
from siyu.accounts.service import create_account
from siyu.customers import stages
from siyu.customers.models import Customer, Stage
from siyu.events.models import Event

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _post(client: TestClient, tenant, customer_id: int, type_: str, n: int, **props: Any) -> None:  # type: ignore[no-untyped-def]
    body = {
        "customer_id": customer_id,
        "type": type_,
        "occurred_at": (T0 + timedelta(minutes=n)).isoformat(),
        "idempotency_key": f"{type_}-{n}",
        "properties": props,
    }
    r = client.post("/api/v1/events", json=body, headers=tenant.auth())
    assert r.status_code in (200, 201), r.text


def _stage(db: Session, customer_id: int) -> str:
    db.expire_all()
    customer = db.get(Customer, customer_id)
    assert customer is not None
    return customer.stage.value


def _replayed(db: Session, customer_id: int) -> Stage:
    rows = db.execute(select(Event.customer_id, Event.type, Event.properties).order_by(Event.id)).all()
    return stages.replay(rows).get(customer_id, Stage.new)


def test_stages_follow_the_rules_and_replay_gives_the_same(client: TestClient, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    account = create_account(
        db, tenant.org_id, AccountIn(kind=AccountKind.wecom_member, external_id="m1", name="m1")
    )
    db.commit()
    created = client.post(
        f"/api/v1/customers?account_id={account.id}", json={"name": "周"}, headers=tenant.auth()
    ).json()
    cid = created["id"]
    steps = [
        ("message_sent", {}, "contacted"),
        ("message_received", {}, "engaged"),
        ("order_paid", {"order_id": 1, "amount_fen": 9900}, "converted"),
        ("order_paid", {"order_id": 2, "amount_fen": 500}, "repeat"),
        ("order_refunded", {"order_id": 2, "amount_fen": 500, "refunded_fen": 500}, "converted"),
        ("order_refunded", {"order_id": 1, "amount_fen": 9900, "refunded_fen": 100}, "converted"),
    ]
    assert _stage(db, cid) == "new"
    for n, (type_, props, expected) in enumerate(steps):
        _post(client, tenant, cid, type_, n, **props)
        assert _stage(db, cid) == expected, type_
        assert _replayed(db, cid).value == expected
    change = db.scalars(
        select(Event).where(Event.customer_id == cid, Event.type == "stage_changed").order_by(Event.id.desc())
    ).first()
    assert change is not None
    assert change.properties == {
        "from": "repeat",
        "to": "converted",
        "reason": "rule: order_refunded",
        "manual": False,
    }

    r = client.delete(f"/api/v1/customers/{cid}/follows/{account.id}?by=customer", headers=tenant.auth())
    assert r.status_code == 200, r.text
    assert _stage(db, cid) == "lost"
    assert _replayed(db, cid) == Stage.lost


def test_a_stage_set_by_hand_needs_a_reason_and_holds_until_the_rules_move(
    client: TestClient, db: Session, tenant
) -> None:  # type: ignore[no-untyped-def]
    cid = client.post("/api/v1/customers", json={"name": "吴"}, headers=tenant.auth()).json()["id"]
    no_reason = client.patch(f"/api/v1/customers/{cid}", json={"stage": "engaged"}, headers=tenant.auth())
    assert no_reason.status_code == 422 and no_reason.json()["field"] == "stage_reason"
    assert _stage(db, cid) == "new"
    ok = client.patch(
        f"/api/v1/customers/{cid}",
        json={"stage": "engaged", "stage_reason": "电话里聊过"},
        headers=tenant.auth(),
    )
    assert ok.status_code == 200 and ok.json()["stage"] == "engaged"
    manual = db.scalars(select(Event).where(Event.customer_id == cid, Event.type == "stage_changed")).one()
    assert manual.properties["manual"] is True and manual.properties["reason"] == "电话里聊过"
    assert manual.properties["actor_id"] == tenant.admin_id
    # An event that does not change what the rules derive keeps the hand-set stage...
    _post(client, tenant, cid, "note_added", 1)
    assert _stage(db, cid) == "engaged"
    # ...one that does moves it.
    _post(client, tenant, cid, "order_paid", 2, order_id=7, amount_fen=100)
    assert _stage(db, cid) == "converted"
    assert _replayed(db, cid) == Stage.converted


def test_replay_folds_manual_and_rule_changes_in_log_order() -> None:
    rows = [
        (1, "customer_added", {}),
        (1, "follow_started", {"account_id": 5}),
        (1, "stage_changed", {"to": "engaged", "manual": True}),
        (1, "follow_started", {"account_id": 6}),  # derived stays new: the hand-set stage holds
        (1, "lead_replied", {}),  # derived moves to contacted: the rules win
        (2, "follow_started", {"account_id": 5}),
        (2, "follow_ended", {"account_id": 5, "by": "staff"}),
        (3, "follow_ended", {"account_id": 9, "by": "customer"}),  # a tombstone: had a follow, none active
    ]
    assert stages.replay(rows) == {1: Stage.contacted, 2: Stage.lost, 3: Stage.lost}
