"""Erasure on request: nothing personal is left in any table nor in the analytics projection, the books
still add up, and the erasure is audited; export carries everything before it."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session
from tests.privacy.conftest import COMMENT_TEXT, EXTERNAL, MOBILE, NAME, NOTE_TEXT, OPEN_ID, Person

import siyu.models  # noqa: F401  (every table on the metadata)
from siyu.analytics.projection import close_projections, default_path, projection_for
from siyu.commerce.models import Order
from siyu.customers.models import Customer
from siyu.events import outbox
from siyu.kit.db import Base, make_sessionmaker
from siyu.kit.settings import Settings
from siyu.worker import queue

NEEDLES = (NAME, MOBILE, EXTERNAL, OPEN_ID, "cmt-secret-1", "我想买")


def _personal_data_left(db: Session) -> list[str]:
    """Every (table, needle) where a row of any table still holds one of the person's values."""
    found = []
    for table in Base.metadata.sorted_tables:
        for row in db.execute(select(table)).mappings():
            blob = json.dumps(dict(row), ensure_ascii=False, default=str)
            found += [f"{table.name}: {n}" for n in NEEDLES if n in blob]
    return found


def test_export_holds_everything_and_is_audited(client: TestClient, tenant, person: Person) -> None:  # type: ignore[no-untyped-def]
    cid = person.customer_id
    response = client.get(f"/api/v1/customers/{cid}/export", headers=tenant.auth("admin"))
    assert response.status_code == 200, response.text
    assert "attachment" in response.headers["content-disposition"]
    data = response.json()
    assert data["profile"]["name"] == NAME and data["profile"]["mobile"] == MOBILE
    assert {(i["kind"], i["value"]) for i in data["identities"]} >= {
        ("mobile", MOBILE),
        ("wecom_external_userid", EXTERNAL),
        ("douyin_open_id", OPEN_ID),
    }
    assert data["tags"] == [{"group": "意向", "tag": "高意向"}]
    assert [n["body"] for n in data["notes"]] == [NOTE_TEXT]
    assert [(o["external_id"], o["amount_fen"]) for o in data["orders"]] == [("TB-1", 12_900)]
    assert [o["items"][0]["name"] for o in data["orders"]] == ["面霜"]
    assert [(c["scope"], c["granted"]) for c in data["consents"]] == [("marketing", True)]
    assert [c["content"] for c in data["lead_comments"]] == [COMMENT_TEXT]
    assert [f["account_id"] for f in data["follows"]] == [person.account_id]
    assert [g["group"] for g in data["groups"]] == ["福利群"]
    assert {"customer_added", "tag_added", "note_added", "order_paid"} <= {e["type"] for e in data["events"]}
    assert data["messages"] == []
    # Operators may not export, even their own customers.
    assert client.get(f"/api/v1/customers/{cid}/export", headers=tenant.auth("operator")).status_code == 403
    audit = client.get("/api/v1/audit?action=customer_exported", headers=tenant.auth("admin")).json()
    assert [(e["target_type"], e["target_id"]) for e in audit["items"]] == [("customer", str(cid))]


@pytest.mark.slow
def test_erasure_leaves_no_personal_data_anywhere(  # type: ignore[no-untyped-def]
    client: TestClient, engine: Engine, db: Session, tenant, person: Person, tmp_path, monkeypatch
) -> None:
    cid = person.customer_id
    conf = Settings(data_dir=tmp_path / "analytics")
    monkeypatch.setitem(queue._state, "settings", conf)
    path = default_path(conf.data_dir)
    path.parent.mkdir(parents=True)
    projection = projection_for(engine, path)
    try:
        projection.refresh(force=True)
        before = projection.query(
            f"SELECT count(*) FROM events WHERE properties LIKE '%{MOBILE}%'", refresh=False
        )
        assert before[0][0] > 0  # the remark event carried the mobile into the projection

        wrong = client.post(
            f"/api/v1/customers/{cid}/erase", json={"confirm": str(cid + 1)}, headers=tenant.auth("admin")
        )
        assert wrong.status_code == 422 and wrong.json()["field"] == "confirm"
        denied = client.post(
            f"/api/v1/customers/{cid}/erase", json={"confirm": str(cid)}, headers=tenant.auth("operator")
        )
        assert denied.status_code == 403
        erased = client.post(
            f"/api/v1/customers/{cid}/erase", json={"confirm": str(cid)}, headers=tenant.auth("admin")
        )
        assert erased.status_code == 200, erased.text
        assert erased.json()["counts"]["wecom_inbox"] >= 2  # the callback and the welcome send

        outbox.drain(make_sessionmaker(engine))
        db.expire_all()
        assert _personal_data_left(db) == []
        # The unrelated callback is still there.
        assert db.scalar(text("SELECT count(*) FROM inbox")) == 1
        for needle in {form for n in NEEDLES for form in (n, json.dumps(n)[1:-1])}:
            rows = projection.query(
                f"SELECT count(*) FROM events WHERE properties LIKE '%{needle}%'", refresh=False
            )
            assert rows[0][0] == 0, needle
        # The books: the order stays on the de-identified profile, with its amount, here and in analytics.
        assert db.scalar(select(func.sum(Order.amount_fen)).where(Order.org_id == tenant.org_id)) == 12_900
        assert projection.query("SELECT sum(amount_fen) FROM orders", refresh=False)[0][0] == 12_900
        customer = db.get(Customer, cid)
        assert customer is not None and customer.erased_at is not None and customer.name == ""
        events = db.scalars(text("SELECT type FROM events WHERE customer_id = :c").bindparams(c=cid)).all()
        assert "order_paid" in events and "customer_erased" in events
    finally:
        close_projections()

    # Gone from every list and page; a second erasure is refused.
    assert client.get(f"/api/v1/customers/{cid}", headers=tenant.auth("admin")).status_code == 404
    assert client.get("/api/v1/customers", headers=tenant.auth("admin")).json()["items"] == []
    again = client.post(
        f"/api/v1/customers/{cid}/erase", json={"confirm": str(cid)}, headers=tenant.auth("admin")
    )
    assert again.status_code == 404
    audit = client.get(
        f"/api/v1/audit?action=customer_erased&target_id={cid}", headers=tenant.auth("admin")
    ).json()["items"]
    assert len(audit) == 1 and audit[0]["details"]["counts"]["identities"] == 3
