"""Input no database can store answers 422 naming the field, on SQLite and PostgreSQL alike: the NUL
character anywhere (PostgreSQL answered 500) and integers outside 64 bits (PostgreSQL answered 500).
Douyin's signed webhook drops a NUL instead (a refusal would be retried for ever)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.leads.test_intake import comment_body, configure, post

from siyu.customers.models import Customer
from siyu.leads.models import Comment

BIG = 2**63  # one past the largest 64-bit id


@pytest.fixture
def customer_id(db: Session, tenant) -> int:  # type: ignore[no-untyped-def]
    customer = Customer(org_id=tenant.org_id, name="客户")
    db.add(customer)
    db.commit()
    return customer.id


def _refused(response, field: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field, response.text


def test_nul_in_json_bodies_is_refused_naming_the_field(client: TestClient, tenant, customer_id: int) -> None:  # type: ignore[no-untyped-def]
    auth = tenant.auth()
    _refused(client.post("/api/v1/customers", json={"name": "王\u0000五"}, headers=auth), "name")
    _refused(
        client.post(f"/api/v1/customers/{customer_id}/notes", json={"body": "x\u0000"}, headers=auth), "body"
    )
    _refused(
        client.post("/api/v1/tag-groups", json={"name": "意向", "tags": ["高", "\u0000"]}, headers=auth),
        "tags[1]",
    )
    event = {"type": "message.received", "customer_id": customer_id, "occurred_at": "2026-01-01T00:00:00Z"}
    batch = {"events": [{**event, "idempotency_key": "k1"}, {**event, "idempotency_key": "k\u00002"}]}
    _refused(client.post("/api/v1/events/batch", json=batch, headers=auth), "events[1].idempotency_key")
    props = {**event, "idempotency_key": "k3", "properties": {"text": {"deep": ["ok", "\u0000"]}}}
    _refused(client.post("/api/v1/events", json=props, headers=auth), "properties.text.deep[1]")
    assert client.get("/api/v1/events", headers=auth).json()["items"] == []


def test_nul_in_query_and_path_is_refused(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    auth = tenant.auth()
    _refused(client.get("/api/v1/customers", params={"name": "a\u0000"}, headers=auth), "name")
    _refused(client.get("/api/v1/events", params={"type": "\u0000"}, headers=auth), "type")
    response = client.get("/api/v1/tag-groups/%00", headers=auth)
    assert response.status_code == 422 and "NUL" in response.json()["detail"]


def test_ids_beyond_64_bits_are_refused(client: TestClient, tenant, customer_id: int) -> None:  # type: ignore[no-untyped-def]
    auth = tenant.auth()
    response = client.get(f"/api/v1/customers/{BIG}", headers=auth)
    assert response.status_code == 422 and "64 bits" in response.json()["detail"]
    _refused(client.get("/api/v1/events", params={"customer_id": BIG}, headers=auth), "customer_id")
    _refused(client.get("/api/v1/orders", params={"cursor": str(BIG * 10)}, headers=auth), "cursor")
    event = {"type": "x", "customer_id": BIG, "occurred_at": "2026-01-01T00:00:00Z", "idempotency_key": "b"}
    _refused(client.post("/api/v1/events", json=event, headers=auth), "customer_id")
    order = {
        "platform": "taobao",
        "external_id": "1",
        "customer_id": customer_id,
        "amount_fen": -BIG - 1,
        "paid_at": "2026-01-01T00:00:00Z",
    }
    _refused(client.post("/api/v1/orders", json=order, headers=auth), "amount_fen")
    # Long digit strings that are text stay text (an order number is no id).
    ok = {**order, "external_id": str(BIG * 100), "amount_fen": 100}
    assert client.post("/api/v1/orders", json=ok, headers=auth).status_code == 201


def test_a_signed_douyin_comment_with_nul_is_stored_without_it(
    client: TestClient, db: Session, tenant
) -> None:  # type: ignore[no-untyped-def]
    configure(db, tenant.org_id)
    response = post(client, tenant.slug, comment_body("求\u0000资料"))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "stored"
    db.expire_all()
    assert db.scalars(select(Comment.content)).one() == "求资料"
    assert db.scalar(select(func.count()).select_from(Comment)) == 1


def test_nul_in_a_comment_import_is_a_bad_row_named_by_number(
    client: TestClient, db: Session, tenant
) -> None:  # type: ignore[no-untyped-def]
    csv = (
        "comment_id,content,commented_at,video_id,nickname\n"
        "x1,求资料,2026-11-23 12:00:00,n100,阿花\n"
        "x2,多少\x00钱,2026-11-23 12:01:00,n100,无名\n"
    )
    response = client.post(
        "/api/v1/comments/import?platform=xiaohongshu",
        content=csv.encode(),
        headers={**tenant.auth(), "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["created"] == 1 and [(e["row"], e["field"]) for e in report["errors"]] == [(3, "content")]
    db.expire_all()
    assert db.scalars(select(Comment.external_id)).all() == ["x1"]
