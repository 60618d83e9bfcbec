"""Deleting a tag or a tag group takes it off every customer who had it, and each of them gets tag_removed
(through the API and the console), in the same transaction; customers without it get nothing."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.web.settings_fixtures import console_login

from siyu.customers.models import CustomerTag
from siyu.events.models import Event


def _removed(db: Session, org_id: int) -> list[tuple[int, dict[str, Any]]]:
    db.expire_all()
    rows = db.scalars(select(Event).where(Event.org_id == org_id, Event.type == "tag_removed"))
    return sorted(((e.customer_id, e.properties) for e in rows), key=lambda r: (r[0], r[1]["tag_id"]))


def _customer(client: TestClient, tenant: Any, name: str, tag_ids: list[int]) -> int:
    made = client.post("/api/v1/customers", json={"name": name}, headers=tenant.auth())
    assert made.status_code == 201, made.text
    cid = int(made.json()["id"])
    tagged = client.put(f"/api/v1/customers/{cid}/tags", json={"tag_ids": tag_ids}, headers=tenant.auth())
    assert tagged.status_code == 200, tagged.text
    return cid


def test_deleting_tags_and_groups_through_the_api_records_tag_removed_per_customer(
    client: TestClient, tenant: Any, db: Session
) -> None:
    admin = tenant.auth()
    group = client.post(
        "/api/v1/tag-groups", json={"name": "意向", "tags": ["高", "低"]}, headers=admin
    ).json()
    high, low = (t["id"] for t in group["tags"])
    both = _customer(client, tenant, "甲", [high, low])
    only_high = _customer(client, tenant, "乙", [high])
    _customer(client, tenant, "丙", [])
    assert _removed(db, tenant.org_id) == []

    assert client.delete(f"/api/v1/tags/{high}", headers=admin).status_code == 204
    gone = {"tag_id": high, "tag": "高", "external_id": None, "origin": "api"}
    assert _removed(db, tenant.org_id) == [(both, gone), (only_high, gone)]

    assert client.delete(f"/api/v1/tag-groups/{group['id']}", headers=admin).status_code == 204
    assert _removed(db, tenant.org_id) == [
        (both, gone),
        (both, {"tag_id": low, "tag": "低", "external_id": None, "origin": "api"}),
        (only_high, gone),
    ]
    assert db.scalar(select(CustomerTag.customer_id).where(CustomerTag.customer_id == both)) is None


def test_deleting_a_tag_in_the_console_records_tag_removed(
    client: TestClient, tenant: Any, db: Session
) -> None:
    group = client.post(
        "/api/v1/tag-groups", json={"name": "痛点", "tags": ["干皮"]}, headers=tenant.auth()
    ).json()
    dry = group["tags"][0]["id"]
    cid = _customer(client, tenant, "赵女士", [dry])
    csrf = console_login(client, f"admin@{tenant.slug}.test")
    assert client.post(f"/settings/tags/{dry}/delete", data={"csrf_token": csrf}).status_code == 200
    assert _removed(db, tenant.org_id) == [
        (cid, {"tag_id": dry, "tag": "干皮", "external_id": None, "origin": "console"})
    ]
    # The timeline says so in words.
    page = client.get(f"/customers/{cid}")
    assert page.status_code == 200 and "移除标签" in page.text and "干皮" in page.text
