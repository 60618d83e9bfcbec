"""The customers REST API: validation, masking, remarks, tags, notes, timeline, visibility and tenancy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu.accounts.models import AccountKind
from siyu.accounts.schemas import AccountIn
from siyu.accounts.service import create_account
from siyu.commerce.models import Order
from siyu.customers import profiles, tagging
from siyu.customers.schemas import TagGroupIn
from siyu.events.models import Event

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def _account(db: Session, org_id: int, ext: str, operator_id: int | None = None) -> int:
    acc = create_account(
        db,
        org_id,
        AccountIn(kind=AccountKind.wecom_member, external_id=ext, name=ext, operator_id=operator_id),
    )
    db.commit()
    return acc.id


def _create(client: TestClient, tenant, **body) -> dict:  # type: ignore[no-untyped-def]
    response = client.post("/api/v1/customers", json=body, headers=tenant.auth("admin"))
    assert response.status_code == 201, response.text
    return response.json()


def test_create_validates_mobile_and_names_the_field(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    bad = client.post("/api/v1/customers", json={"name": "x", "mobile": "12345"}, headers=tenant.auth())
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "mobile"]
    bad_stage = client.post("/api/v1/customers", json={"stage": "vip"}, headers=tenant.auth())
    assert bad_stage.status_code == 422 and bad_stage.json()["detail"][0]["loc"] == ["body", "stage"]
    long_remark = client.post("/api/v1/customers", json={"remark": "x" * 21}, headers=tenant.auth())
    assert long_remark.status_code == 422 and long_remark.json()["detail"][0]["loc"] == ["body", "remark"]
    ok = _create(client, tenant, name="王芳", mobile="+86 138-1234-5678", source="douyin", intent="问价")
    assert ok["mobile"] == "13812345678"
    assert ok["remark"] == "王芳+抖音+问价+13812345678" and not ok["remark_is_manual"]


def test_operators_see_masked_mobiles(client: TestClient, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    acc = _account(db, tenant.org_id, "op", tenant.operator_id)
    created = client.post(
        f"/api/v1/customers?account_id={acc}",
        json={"name": "王芳", "mobile": "13812345678"},
        headers=tenant.auth("operator"),
    )
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    assert created.json()["mobile"] == "138****5678"
    as_op = client.get(f"/api/v1/customers/{cid}", headers=tenant.auth("operator")).json()
    assert as_op["mobile"] == "138****5678" and "13812345678" not in as_op["remark"]
    ids = client.get(f"/api/v1/customers/{cid}/identities", headers=tenant.auth("operator")).json()
    assert [i["value"] for i in ids] == ["138****5678"]
    assert (
        client.get(f"/api/v1/customers/{cid}", headers=tenant.auth("admin")).json()["mobile"] == "13812345678"
    )
    listed = client.get("/api/v1/customers?mobile=5678", headers=tenant.auth("operator")).json()
    assert [c["mobile"] for c in listed["items"]] == ["138****5678"]


def test_operator_needs_an_account_to_create(client: TestClient, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    other = _account(db, tenant.org_id, "not-mine")
    r = client.post("/api/v1/customers", json={"name": "x"}, headers=tenant.auth("operator"))
    assert r.status_code == 422 and r.json()["field"] == "account_id"
    r = client.post(
        f"/api/v1/customers?account_id={other}", json={"name": "x"}, headers=tenant.auth("operator")
    )
    assert r.status_code == 422 and r.json()["field"] == "account_id"


def test_operator_visibility(client: TestClient, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    mine = _account(db, tenant.org_id, "mine", tenant.operator_id)
    theirs = _account(db, tenant.org_id, "theirs")
    a = _create(client, tenant, name="A")["id"]
    b = _create(client, tenant, name="B", mobile="13900002222")["id"]
    op = tenant.auth("operator")
    for cid, acc in ((a, mine), (b, theirs)):
        assert (
            client.post(
                f"/api/v1/customers/{cid}/follows", json={"account_id": acc}, headers=tenant.auth()
            ).status_code
            == 201
        )
    assert [c["id"] for c in client.get("/api/v1/customers", headers=op).json()["items"]] == [a]
    for path in ("", "/identities", "/follows", "/timeline", "/notes", "/tags", "/merges"):
        assert client.get(f"/api/v1/customers/{b}{path}", headers=op).status_code == 404, path
    assert client.patch(f"/api/v1/customers/{b}", json={"name": "x"}, headers=op).status_code == 404
    # An operator may not pull a hidden profile into theirs by typing its mobile.
    r = client.patch(f"/api/v1/customers/{a}", json={"mobile": "13900002222"}, headers=op)
    assert r.status_code == 409 and r.json()["field"] == "mobile"
    r = client.post(
        f"/api/v1/customers/{a}/identities", json={"kind": "mobile", "value": "13900002222"}, headers=op
    )
    assert r.status_code == 409 and r.json()["field"] == "value"
    # Their account cannot be used on customers they see through someone else's account either.
    r = client.post(f"/api/v1/customers/{a}/follows", json={"account_id": theirs}, headers=op)
    assert r.status_code == 422 and r.json()["field"] == "account_id"
    assert (
        client.post(
            "/api/v1/customers/merge", json={"survivor_id": a, "merged_id": b, "reason": "x"}, headers=op
        ).status_code
        == 403
    )


@pytest.mark.slow
def test_remark_auto_manual_and_reset(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    cid = _create(client, tenant, name="李雷", source="taobao")["id"]
    url = f"/api/v1/customers/{cid}"
    assert (
        client.patch(url, json={"intent": "复购"}, headers=tenant.auth()).json()["remark"] == "李雷+淘宝+复购"
    )
    manual = client.patch(url, json={"remark": "老客户李雷"}, headers=tenant.auth()).json()
    assert manual["remark"] == "老客户李雷" and manual["remark_is_manual"]
    kept = client.patch(url, json={"name": "李雷雷", "mobile": "13700001111"}, headers=tenant.auth()).json()
    assert kept["remark"] == "老客户李雷" and kept["mobile"] == "13700001111"
    reset = client.post(f"{url}/remark/reset", headers=tenant.auth()).json()
    # 21 characters in full: the longest part (the name) gives one up to fit WeCom's 20.
    assert reset["remark"] == "李雷+淘宝+复购+13700001111" and not reset["remark_is_manual"]
    assert client.patch(url, json={"name": None}, headers=tenant.auth()).json()["field"] == "name"
    assert client.patch(url, json={"nickname": "x"}, headers=tenant.auth()).status_code == 422


def test_identity_merge_via_api_answers_with_the_survivor(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    old = _create(client, tenant, name="旧")["id"]
    new = _create(client, tenant, name="新")["id"]
    body = {"kind": "unionid", "value": "u-1"}
    assert (
        client.post(f"/api/v1/customers/{old}/identities", json=body, headers=tenant.auth()).status_code
        == 201
    )
    merged = client.post(f"/api/v1/customers/{new}/identities", json=body, headers=tenant.auth())
    assert merged.status_code == 201
    assert merged.json()["id"] == old and merged.json()["resolved_from"] == new
    got = client.get(f"/api/v1/customers/{new}", headers=tenant.auth()).json()
    assert got["id"] == old and got["resolved_from"] == new
    audits = client.get(f"/api/v1/customers/{old}/merges", headers=tenant.auth()).json()
    assert [a["merged_id"] for a in audits] == [new]
    bad = client.post(
        f"/api/v1/customers/{old}/identities", json={"kind": "qq", "value": "1"}, headers=tenant.auth()
    )
    assert bad.status_code == 422
    dup = client.post(
        "/api/v1/customers", json={"name": "重复", "mobile": "13600000000"}, headers=tenant.auth()
    )
    again = client.post("/api/v1/customers", json={"mobile": "13600000000"}, headers=tenant.auth()).json()
    assert again["id"] == dup.json()["id"] and again["resolved_from"] == dup.json()["id"] + 1


def test_manual_merge_endpoint(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    a = _create(client, tenant, name="A")["id"]
    b = _create(client, tenant, name="", region="广州")["id"]
    r = client.post(
        "/api/v1/customers/merge",
        json={"survivor_id": b, "merged_id": a, "reason": "同一人"},
        headers=tenant.auth(),
    )
    assert r.status_code == 201 and r.json()["survivor_id"] == b
    survivor = client.get(f"/api/v1/customers/{b}", headers=tenant.auth()).json()
    assert survivor["name"] == "A" and survivor["region"] == "广州"
    r = client.post(
        "/api/v1/customers/merge",
        json={"survivor_id": b, "merged_id": b, "reason": "x"},
        headers=tenant.auth(),
    )
    assert r.status_code == 422 and r.json()["field"] == "merged_id"


def test_tags_crud_and_replace(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    admin = tenant.auth()
    group = client.post("/api/v1/tag-groups", json={"name": "意向", "tags": ["高", "低"]}, headers=admin)
    assert group.status_code == 201
    high, low = (t["id"] for t in group.json()["tags"])
    assert client.post("/api/v1/tag-groups", json={"name": "意向"}, headers=admin).status_code == 409
    dup = client.post("/api/v1/tags", json={"group_id": group.json()["id"], "name": "高"}, headers=admin)
    assert dup.status_code == 409 and dup.json()["field"] == "name"
    mid = client.post(
        "/api/v1/tags", json={"group_id": group.json()["id"], "name": "中"}, headers=admin
    ).json()["id"]
    assert (
        client.post(
            "/api/v1/tags", json={"group_id": 1, "name": "x"}, headers=tenant.auth("operator")
        ).status_code
        == 403
    )
    cid = _create(client, tenant, name="C")["id"]
    url = f"/api/v1/customers/{cid}/tags"
    assert {t["id"] for t in client.put(url, json={"tag_ids": [high, low]}, headers=admin).json()} == {
        high,
        low,
    }
    assert {t["id"] for t in client.put(url, json={"tag_ids": [mid, low]}, headers=admin).json()} == {
        mid,
        low,
    }
    assert {t["id"] for t in client.post(f"{url}/{high}", headers=admin).json()} == {high, mid, low}
    assert {t["id"] for t in client.delete(f"{url}/{low}", headers=admin).json()} == {high, mid}
    assert client.put(url, json={"tag_ids": [0]}, headers=admin).status_code == 422
    assert client.put(url, json={"tag_ids": [99999]}, headers=admin).json()["field"] == "tag_ids"
    renamed = client.patch(f"/api/v1/tags/{mid}", json={"name": "一般"}, headers=admin)
    assert renamed.status_code == 200 and renamed.json()["name"] == "一般"
    listed = client.get(f"/api/v1/customers?tag_ids={high}&tag_ids={mid}", headers=admin).json()
    assert [c["id"] for c in listed["items"]] == [cid]
    assert client.delete(f"/api/v1/tags/{high}", headers=admin).status_code == 204
    assert {t["id"] for t in client.get(url, headers=admin).json()} == {mid}
    assert client.delete(f"/api/v1/tag-groups/{group.json()['id']}", headers=admin).status_code == 204
    assert client.get(url, headers=admin).json() == []


def test_notes_newest_first_and_only_own_deletable(client: TestClient, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    acc = _account(db, tenant.org_id, "op", tenant.operator_id)
    cid = client.post(
        f"/api/v1/customers?account_id={acc}", json={"name": "N"}, headers=tenant.auth("operator")
    ).json()["id"]
    first = client.post(
        f"/api/v1/customers/{cid}/notes", json={"body": "first"}, headers=tenant.auth()
    ).json()
    second = client.post(
        f"/api/v1/customers/{cid}/notes", json={"body": "second"}, headers=tenant.auth("operator")
    ).json()
    assert (
        client.post(f"/api/v1/customers/{cid}/notes", json={"body": "  "}, headers=tenant.auth()).status_code
        == 422
    )
    notes = client.get(f"/api/v1/customers/{cid}/notes", headers=tenant.auth("operator")).json()
    assert [n["body"] for n in notes] == ["second", "first"]
    assert (
        client.delete(
            f"/api/v1/customers/{cid}/notes/{first['id']}", headers=tenant.auth("operator")
        ).status_code
        == 403
    )
    assert (
        client.delete(
            f"/api/v1/customers/{cid}/notes/{second['id']}", headers=tenant.auth("operator")
        ).status_code
        == 204
    )
    assert (
        client.delete(f"/api/v1/customers/{cid}/notes/{first['id']}", headers=tenant.auth()).status_code
        == 204
    )


def test_follows_unfollow_and_refollow(client: TestClient, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    acc = _account(db, tenant.org_id, "a")
    cid = _create(client, tenant, name="F")["id"]
    url = f"/api/v1/customers/{cid}/follows"
    body = {"account_id": acc, "since": T0.isoformat(), "source": "douyin", "state": "live"}
    assert client.post(url, json=body, headers=tenant.auth()).json()["status"] == "active"
    assert client.post(url, json=body, headers=tenant.auth()).status_code == 201
    assert len(client.get(url, headers=tenant.auth()).json()) == 1
    assert (
        client.post(
            url, json={"account_id": acc, "since": "2024-06-01T12:00:00"}, headers=tenant.auth()
        ).status_code
        == 422
    )
    ended = client.delete(f"{url}/{acc}?by=customer", headers=tenant.auth()).json()
    assert ended["status"] == "deleted_by_customer" and ended["ended_at"]
    assert client.delete(f"{url}/{acc}?by=robot", headers=tenant.auth()).status_code == 422
    again = client.post(url, json={"account_id": acc}, headers=tenant.auth()).json()
    assert again["status"] == "active" and again["ended_at"] is None and again["source"] == "douyin"
    assert client.get(f"/api/v1/accounts/{acc}", headers=tenant.auth()).json()["friend_count"] == 1


def test_timeline_merges_sources_newest_first_with_stable_pages(
    client: TestClient, db: Session, tenant
) -> None:  # type: ignore[no-untyped-def]
    customer = profiles.create_customer(db, tenant.org_id, {"name": "T"})
    for i in range(7):
        db.add(
            Event(
                org_id=tenant.org_id,
                customer_id=customer.id,
                type=f"e{i}",
                occurred_at=T0 + timedelta(hours=i),
                idempotency_key=f"k{i}",
            )
        )
    # Same instant as event 3: the tie is ordered, never skipped or repeated across pages.
    db.add(
        Order(
            org_id=tenant.org_id,
            customer_id=customer.id,
            platform="jd",
            external_id="o1",
            amount_fen=100,
            paid_at=T0 + timedelta(hours=3),
        )
    )
    db.add(
        Event(
            org_id=tenant.org_id,
            customer_id=customer.id,
            type="e3b",
            occurred_at=T0 + timedelta(hours=3),
            idempotency_key="k3b",
        )
    )
    db.commit()
    url = f"/api/v1/customers/{customer.id}/timeline"
    full = client.get(f"{url}?limit=200", headers=tenant.auth()).json()
    assert full["next_before"] is None
    times = [item["at"] for item in full["items"]]
    # 7 events, a note, an order, and the customer_added event of the profile's creation (now, so first).
    assert times == sorted(times, reverse=True) and len(times) == 10
    assert full["items"][0]["type"] == "customer_added"
    assert [i["type"] for i in full["items"]][4:7] == ["e3b", "e3", "order"]
    paged, before = [], None
    while True:
        page = client.get(
            url, params={"limit": 2, **({"before": before} if before else {})}, headers=tenant.auth()
        ).json()
        paged.extend((i["kind"], i["id"]) for i in page["items"])
        before = page["next_before"]
        if before is None:
            break
    assert paged == [(i["kind"], i["id"]) for i in full["items"]]
    assert client.get(f"{url}?before=garbage", headers=tenant.auth()).json()["field"] == "before"


def test_list_validates_filters(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    for query in ("mobile=12", "stage=vip", "limit=0", "limit=1000", "cursor=-1", "tag_ids=x"):
        r = client.get(f"/api/v1/customers?{query}", headers=tenant.auth())
        assert r.status_code == 422, query
    assert client.get("/api/v1/customers/count?stage=new", headers=tenant.auth()).json() == {"count": 0}


@pytest.fixture
def foreign(client: TestClient, db: Session, make_tenant):  # type: ignore[no-untyped-def]
    """Two tenants; ``b`` owns a customer, tag group, tag, note and account that ``a`` must never reach."""
    a, b = make_tenant(), make_tenant()
    acc = _account(db, b.org_id, "b-acc")
    customer = profiles.create_customer(db, b.org_id, {"name": "B的客户", "mobile": "13512345678"})
    group, (tag,) = tagging.create_tag_group(db, b.org_id, TagGroupIn(name="g", tags=["t"]))
    db.commit()
    note = client.post(f"/api/v1/customers/{customer.id}/notes", json={"body": "b"}, headers=b.auth()).json()
    return a, b, customer.id, group.id, tag.id, note["id"], acc


def test_every_customers_endpoint_hides_other_orgs(client: TestClient, foreign) -> None:  # type: ignore[no-untyped-def]
    a, _b, cid, gid, tid, nid, acc = foreign
    h = a.auth("owner")
    calls = [
        ("GET", f"/customers/{cid}", None),
        ("PATCH", f"/customers/{cid}", {"name": "x"}),
        ("GET", f"/customers/{cid}/identities", None),
        ("POST", f"/customers/{cid}/identities", {"kind": "openid", "value": "o"}),
        ("GET", f"/customers/{cid}/merges", None),
        ("GET", f"/customers/{cid}/follows", None),
        ("POST", f"/customers/{cid}/follows", {"account_id": acc}),
        ("DELETE", f"/customers/{cid}/follows/{acc}", None),
        ("GET", f"/customers/{cid}/timeline", None),
        ("GET", f"/customers/{cid}/notes", None),
        ("POST", f"/customers/{cid}/notes", {"body": "x"}),
        ("DELETE", f"/customers/{cid}/notes/{nid}", None),
        ("GET", f"/customers/{cid}/tags", None),
        ("PUT", f"/customers/{cid}/tags", {"tag_ids": []}),
        ("POST", f"/customers/{cid}/tags/{tid}", None),
        ("DELETE", f"/customers/{cid}/tags/{tid}", None),
        ("POST", f"/customers/{cid}/remark/reset", None),
        ("GET", f"/tag-groups/{gid}", None),
        ("PATCH", f"/tag-groups/{gid}", {"name": "x"}),
        ("DELETE", f"/tag-groups/{gid}", None),
        ("GET", f"/tags/{tid}", None),
        ("PATCH", f"/tags/{tid}", {"name": "x"}),
        ("DELETE", f"/tags/{tid}", None),
    ]
    for method, path, body in calls:
        r = client.request(method, f"/api/v1{path}", json=body, headers=h)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    mine = _create(client, a, name="mine")["id"]
    r = client.post(
        "/api/v1/customers/merge", json={"survivor_id": mine, "merged_id": cid, "reason": "x"}, headers=h
    )
    assert r.status_code == 404 and r.json()["field"] == "merged_id"
    assert client.get("/api/v1/customers", headers=h).json()["items"][0]["id"] == mine
    assert client.get("/api/v1/tag-groups", headers=h).json() == []
    assert client.get("/api/v1/tags", headers=h).json() == []
    # Ids named in bodies or filters are 422 naming the field.
    assert (
        client.put(f"/api/v1/customers/{mine}/tags", json={"tag_ids": [tid]}, headers=h).json()["field"]
        == "tag_ids"
    )
    assert client.get(f"/api/v1/customers?tag_ids={tid}", headers=h).json()["field"] == "tag_ids"
    assert client.get(f"/api/v1/customers?account_id={acc}", headers=h).json()["field"] == "account_id"
    assert (
        client.post("/api/v1/tags", json={"group_id": gid, "name": "x"}, headers=h).json()["field"]
        == "group_id"
    )


def test_a_masked_mobile_sent_back_never_replaces_the_digits(client: TestClient, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    acc = _account(db, tenant.org_id, "op", tenant.operator_id)
    created = client.post(
        f"/api/v1/customers?account_id={acc}",
        json={"name": "王芳", "mobile": "18100008706", "source": "taobao_parcel_card"},
        headers=tenant.auth("operator"),
    )
    assert created.status_code == 201, created.text
    shown = created.json()
    assert (shown["mobile"], shown["remark"]) == ("181****8706", "王芳+淘宝包裹卡+181****8706")
    url = f"/api/v1/customers/{shown['id']}"
    # The operator sends the whole profile back as shown: the masked values stand for the stored digits.
    same = client.patch(
        url, json={"mobile": shown["mobile"], "remark": shown["remark"]}, headers=tenant.auth("operator")
    )
    assert same.status_code == 200, same.text
    full = client.get(url, headers=tenant.auth("admin")).json()
    assert full["mobile"] == "18100008706" and full["remark"] == "王芳+淘宝包裹卡+18100008706"
    assert not full["remark_is_manual"]  # the remark came back unchanged: still the composed one
    edited = client.patch(url, json={"remark": "VIP王姐+181****8706"}, headers=tenant.auth("operator"))
    assert edited.status_code == 200, edited.text
    full = client.get(url, headers=tenant.auth("admin")).json()
    assert full["remark"] == "VIP王姐+18100008706" and full["remark_is_manual"]
    # A masked number that is not the customer's is refused, naming the field; nothing changes.
    for field, value in (("mobile", "139****0000"), ("remark", "VIP+139****0000")):
        refused = client.patch(url, json={field: value}, headers=tenant.auth("operator"))
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == field and "masked" in refused.json()["detail"]
    assert client.get(url, headers=tenant.auth("admin")).json()["remark"] == "VIP王姐+18100008706"
    # A new profile never takes a masked mobile.
    new = client.post("/api/v1/customers", json={"mobile": "181****8706"}, headers=tenant.auth())
    assert new.status_code == 422 and new.json()["detail"][0]["loc"] == ["body", "mobile"]
    assert "masked" in new.json()["detail"][0]["msg"]
