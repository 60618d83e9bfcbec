"""The event log API: single and batch ingestion, idempotency, validation naming the item, tenancy, listing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.accounts.models import Account, AccountKind
from siyu.customers.models import Customer, CustomerIdentity, FollowRelation
from siyu.events.models import Event

T0 = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)


def _customer(db: Session, org_id: int, name: str = "客户") -> int:
    customer = Customer(org_id=org_id, name=name)
    db.add(customer)
    db.commit()
    return customer.id


def _event(key: str, customer_id: int, minutes: int = 0, **extra: object) -> dict[str, object]:
    return {
        "type": "message.received",
        "customer_id": customer_id,
        "idempotency_key": key,
        "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "properties": {"text": "求资料"},
        **extra,
    }


def _count(db: Session) -> int:
    db.expire_all()
    return int(db.scalar(select(func.count()).select_from(Event)) or 0)


def test_batch_is_idempotent_and_counts_duplicates(client, tenant, db) -> None:  # type: ignore[no-untyped-def]
    cid = _customer(db, tenant.org_id)
    batch = [_event(f"k{i}", cid, i) for i in range(5)]
    first = client.post("/api/v1/events/batch", json={"events": batch}, headers=tenant.auth())
    assert first.status_code == 200, first.text
    assert first.json() == {"inserted": 5, "duplicates": 0}
    # Three repeats and one repeat inside the batch itself.
    again = [*batch[:3], _event("k9", cid), _event("k9", cid, 1)]
    second = client.post("/api/v1/events/batch", json={"events": again}, headers=tenant.auth())
    assert second.json() == {"inserted": 1, "duplicates": 4}
    assert _count(db) == 6
    stored = db.scalar(select(Event).where(Event.idempotency_key == "k9"))
    assert stored is not None and stored.occurred_at == T0  # the first of the in-batch repeats wins
    assert stored.properties == {"text": "求资料"}


def test_single_event_201_then_200_on_repeat(client, tenant, db) -> None:  # type: ignore[no-untyped-def]
    cid = _customer(db, tenant.org_id)
    body = _event("one", cid, occurred_at="2024-06-01T16:00:00+08:00")
    created = client.post("/api/v1/events", json=body, headers=tenant.auth())
    assert created.status_code == 201, created.text
    assert created.json()["occurred_at"].startswith("2024-06-01T08:00:00")  # stored in UTC
    repeat = client.post("/api/v1/events", json={**body, "type": "changed"}, headers=tenant.auth())
    assert repeat.status_code == 200
    assert repeat.json()["id"] == created.json()["id"] and repeat.json()["type"] == "message.received"
    assert _count(db) == 1


def test_bad_item_names_index_and_field_and_stores_nothing(client, tenant, db) -> None:  # type: ignore[no-untyped-def]
    cid = _customer(db, tenant.org_id)
    batch = [_event(f"k{i}", cid, i) for i in range(20)]
    batch[17]["occurred_at"] = "2024-06-01T08:00:00"  # naive
    response = client.post("/api/v1/events/batch", json={"events": batch}, headers=tenant.auth())
    assert response.status_code == 422
    assert response.json()["field"] == "events[17].occurred_at"
    assert "timezone" in response.json()["detail"]

    batch[17]["occurred_at"] = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    response = client.post("/api/v1/events/batch", json={"events": batch}, headers=tenant.auth())
    assert response.status_code == 422 and response.json()["field"] == "events[17].occurred_at"
    assert "future" in response.json()["detail"]

    batch[17] = _event("k17", cid, 17, type="bad type!")
    response = client.post("/api/v1/events/batch", json={"events": batch}, headers=tenant.auth())
    assert response.json()["field"] == "events[17].type"

    batch[17] = {k: v for k, v in _event("k17", cid).items() if k != "customer_id"}
    response = client.post("/api/v1/events/batch", json={"events": batch}, headers=tenant.auth())
    assert response.status_code == 422 and response.json()["field"] == "events[17].customer_id"
    assert _count(db) == 0


def test_batch_size_limits(client, tenant, db) -> None:  # type: ignore[no-untyped-def]
    cid = _customer(db, tenant.org_id)
    empty = client.post("/api/v1/events/batch", json={"events": []}, headers=tenant.auth())
    assert empty.status_code == 422 and empty.json()["field"] == "events"
    too_many = [_event(f"k{i}", cid) for i in range(1001)]
    response = client.post("/api/v1/events/batch", json={"events": too_many}, headers=tenant.auth())
    assert response.status_code == 422 and response.json()["field"] == "events"
    garbage = client.post("/api/v1/events/batch", content=b"{not json", headers=tenant.auth())
    assert garbage.status_code == 422
    assert _count(db) == 0


def test_customer_of_another_org_is_refused(client, make_tenant, db) -> None:  # type: ignore[no-untyped-def]
    mine, theirs = make_tenant("mine"), make_tenant("theirs")
    my_customer = _customer(db, mine.org_id)
    their_customer = _customer(db, theirs.org_id)
    batch = [_event("a", my_customer), _event("b", their_customer)]
    response = client.post("/api/v1/events/batch", json={"events": batch}, headers=mine.auth())
    assert response.status_code == 422
    assert response.json()["field"] == "events[1].customer_id"
    their_account = Account(
        org_id=theirs.org_id, kind=AccountKind.wecom_member, external_id="zhang", name="张"
    )
    db.add(their_account)
    db.commit()
    response = client.post(
        "/api/v1/events/batch",
        json={"events": [_event("c", my_customer, account_id=their_account.id)]},
        headers=mine.auth(),
    )
    assert response.status_code == 422 and response.json()["field"] == "events[0].account_id"
    assert _count(db) == 0


def test_identity_finds_or_creates_the_customer(client, tenant, db) -> None:  # type: ignore[no-untyped-def]
    known = _customer(db, tenant.org_id, "老客户")
    db.add(CustomerIdentity(org_id=tenant.org_id, customer_id=known, kind="unionid", value="oU-known"))
    db.commit()
    batch = [
        {**_event("a", 0), "customer_id": None, "identity": {"kind": "unionid", "value": "oU-known"}},
        {
            **_event("b", 0),
            "customer_id": None,
            "identity": {"kind": "mobile", "value": "+86 138-0013-8000"},
            "source": "douyin_comment",
        },
        {**_event("c", 0, 5), "customer_id": None, "identity": {"kind": "mobile", "value": "13800138000"}},
    ]
    response = client.post("/api/v1/events/batch", json={"events": batch}, headers=tenant.auth())
    assert response.json() == {"inserted": 3, "duplicates": 0}, response.text
    db.expire_all()
    by_key = {e.idempotency_key: e.customer_id for e in db.scalars(select(Event))}
    assert by_key["a"] == known
    assert by_key["b"] == by_key["c"] != known
    created = db.get(Customer, by_key["b"])
    assert created is not None and created.mobile == "13800138000" and created.source == "douyin_comment"
    bad = [{**_event("d", 0), "customer_id": None, "identity": {"kind": "mobile", "value": "12345"}}]
    response = client.post("/api/v1/events/batch", json={"events": bad}, headers=tenant.auth())
    assert response.status_code == 422 and response.json()["field"] == "events[0].identity.value"


def test_events_of_a_merged_customer_go_to_the_survivor(client, tenant, db) -> None:  # type: ignore[no-untyped-def]
    survivor = _customer(db, tenant.org_id)
    merged = Customer(org_id=tenant.org_id, merged_into_id=survivor)
    db.add(merged)
    db.commit()
    response = client.post(
        "/api/v1/events/batch", json={"events": [_event("m", merged.id)]}, headers=tenant.auth()
    )
    assert response.status_code == 200
    db.expire_all()
    assert db.scalar(select(Event.customer_id)) == survivor


def test_list_filters_and_pages(client, tenant, db) -> None:  # type: ignore[no-untyped-def]
    a, b = _customer(db, tenant.org_id), _customer(db, tenant.org_id)
    batch = [_event(f"a{i}", a, i * 60) for i in range(5)] + [_event("b0", b, 30, type="order.paid")]
    client.post("/api/v1/events/batch", json={"events": batch}, headers=tenant.auth())
    page = client.get("/api/v1/events", params={"customer_id": a, "limit": 2}, headers=tenant.auth()).json()
    keys = [e["idempotency_key"] for e in page["items"]]
    assert keys == ["a4", "a3"] and page["next_cursor"]
    rest = client.get(
        "/api/v1/events",
        params={"customer_id": a, "cursor": page["next_cursor"], "limit": 10},
        headers=tenant.auth(),
    ).json()
    assert [e["idempotency_key"] for e in rest["items"]] == ["a2", "a1", "a0"] and rest["next_cursor"] is None
    window = client.get(
        "/api/v1/events",
        params={
            "since": (T0 + timedelta(minutes=30)).isoformat(),
            "until": (T0 + timedelta(hours=2)).isoformat(),
        },
        headers=tenant.auth(),
    ).json()
    assert sorted(e["idempotency_key"] for e in window["items"]) == ["a1", "b0"]
    typed = client.get("/api/v1/events", params={"type": "order.paid"}, headers=tenant.auth()).json()
    assert [e["idempotency_key"] for e in typed["items"]] == ["b0"]
    naive = client.get("/api/v1/events", params={"since": "2024-06-01T00:00:00"}, headers=tenant.auth())
    assert naive.status_code == 422


def test_operator_sees_only_followed_customers_and_orgs_are_isolated(client, make_tenant, db) -> None:  # type: ignore[no-untyped-def]
    tenant, other = make_tenant("one"), make_tenant("two")
    followed, unfollowed = _customer(db, tenant.org_id), _customer(db, tenant.org_id)
    account = Account(
        org_id=tenant.org_id,
        kind=AccountKind.wecom_member,
        external_id="li",
        name="李",
        operator_id=tenant.operator_id,
    )
    db.add(account)
    db.flush()
    db.add(FollowRelation(org_id=tenant.org_id, customer_id=followed, account_id=account.id))
    db.commit()
    client.post(
        "/api/v1/events/batch",
        json={"events": [_event("f", followed), _event("u", unfollowed)]},
        headers=tenant.auth(),
    )
    seen = client.get("/api/v1/events", headers=tenant.auth("operator")).json()["items"]
    assert [e["idempotency_key"] for e in seen] == ["f"]
    assert len(client.get("/api/v1/events", headers=tenant.auth("admin")).json()["items"]) == 2
    assert client.get("/api/v1/events", headers=other.auth()).json()["items"] == []
    # The same idempotency key in another organization is a different event.
    theirs = _customer(db, other.org_id)
    response = client.post(
        "/api/v1/events/batch", json={"events": [_event("f", theirs)]}, headers=other.auth()
    )
    assert response.json() == {"inserted": 1, "duplicates": 0}
    assert client.post("/api/v1/events/batch", json={"events": [_event("x", followed)]}).status_code == 401
