"""Every API route with an id in its path answers another organization's ids like missing ones.

The sweep reads the routes from the app's OpenAPI document, so a new endpoint is covered the day it is added;
an id parameter it does not know how to fill fails the test, so nobody forgets to extend it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from siyu.accounts import service as accounts
from siyu.accounts.models import AccountKind
from siyu.accounts.schemas import AccountIn
from siyu.campaigns import service as campaigns
from siyu.channels import health
from siyu.channels.models import AccountAlert
from siyu.customers import follows, notes, profiles, tagging
from siyu.customers.schemas import TagGroupIn
from siyu.leads.intake import IncomingComment, ingest_comments
from siyu.leads.models import Platform
from siyu.tenancy.models import ApiToken, Role
from siyu.tenancy.principal import Principal

PARAM = re.compile(r"{(\w+)}")


def _seed_victim(db, tenant, client: TestClient) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """One of everything in the victim organization; returns ids by path-parameter name."""
    account = accounts.create_account(
        db,
        tenant.org_id,
        AccountIn(kind=AccountKind.wecom_member, external_id="victim", name="Victim member"),
    )
    customer = profiles.create_customer(db, tenant.org_id, {"name": "受害者", "mobile": "13900000001"})
    follows.follow(db, tenant.org_id, customer.id, account.id, source="sweep")
    group, tags = tagging.create_tag_group(db, tenant.org_id, TagGroupIn(name="意向", tags=["高"]))
    admin = Principal(org_id=tenant.org_id, user_id=tenant.admin_id, role=Role.admin)
    note = notes.add_note(db, admin, customer.id, "only for the victim")
    db.commit()
    order = client.post(
        "/api/v1/orders",
        headers=tenant.auth(),
        json={
            "platform": "taobao",
            "external_id": "V-1",
            "customer_id": customer.id,
            "amount_fen": 1990,
            "paid_at": datetime(2026, 1, 1, tzinfo=UTC).isoformat(),
        },
    )
    assert order.status_code == 201, order.text
    token_id = db.query(ApiToken.id).filter(ApiToken.org_id == tenant.org_id).first()[0]
    cost = client.post(
        "/api/v1/analytics/channel-costs",
        headers=tenant.auth(),
        json={"channel": "douyin", "period_start": "2026-01-01", "period_end": "2026-01-31", "cost_fen": 100},
    )
    assert cost.status_code == 201, cost.text
    pool = client.post(
        "/api/v1/channels/pools",
        headers=tenant.auth(),
        json={"name": "victim pool", "members": [{"account_id": account.id}]},
    )
    assert pool.status_code == 201, pool.text
    code = client.post(
        "/api/v1/channels/codes",
        headers=tenant.auth(),
        json={"name": "victim code", "state": "victim01", "channel": "douyin", "pool_id": pool.json()["id"]},
    )
    assert code.status_code == 201, code.text
    follows.unfollow(db, tenant.org_id, customer.id, account.id, by="staff")
    health.note_deletion(db, tenant.org_id, account.id, by="staff")
    follows.follow(db, tenant.org_id, customer.id, account.id, source="sweep")
    alert_id = db.scalar(select(AccountAlert.id).where(AccountAlert.org_id == tenant.org_id))
    intake = ingest_comments(
        db,
        tenant.org_id,
        [
            IncomingComment(
                Platform.douyin,
                "@sweep",
                "求资料",
                datetime(2026, 1, 1, tzinfo=UTC),
                item_id="@v",
                commenter_id="_000sweep",
            )
        ],
    )
    message = campaigns.create_message(db, tenant.org_id, text="上新通知", customer_ids=[customer.id])
    db.commit()
    return {
        "customer_id": customer.id,
        "account_id": account.id,
        "group_id": group.id,
        "tag_id": tags[0].id,
        "note_id": note.id,
        "order_id": order.json()["id"],
        "token_id": token_id,
        "cost_id": cost.json()["id"],
        "pool_id": pool.json()["id"],
        "code_id": code.json()["id"],
        "fmt": "png",
        "alert_id": alert_id,
        "lead_id": intake.lead_ids[0],
        "comment_id": intake.new_comment_ids[0],
        "message_id": message.id,
        "user_id": tenant.operator_id,
    }


@pytest.mark.slow
def test_no_route_reveals_or_touches_another_orgs_rows(client: TestClient, make_tenant, db) -> None:  # type: ignore[no-untyped-def]
    victim, intruder = make_tenant("victim"), make_tenant("intruder")
    ids = _seed_victim(db, victim, client)
    checked = 0
    for template, operations in client.app.openapi()["paths"].items():
        if not template.startswith("/api/") or "{" not in template:
            continue
        path = template
        for name in PARAM.findall(template):
            assert name in ids, f"{template}: teach the tenancy sweep how to fill {{{name}}}"
            path = path.replace("{" + name + "}", str(ids[name]))
        for method in (m.upper() for m in operations):
            response = client.request(method, path, headers=intruder.auth(), json={})
            checked += 1
            assert response.status_code < 500, f"{method} {path}: {response.status_code}"
            assert not 200 <= response.status_code < 300, (
                f"{method} {path} answered another org: {response.text}"
            )
            if method in ("GET", "DELETE"):
                assert response.status_code == 404, f"{method} {path}: {response.status_code} {response.text}"
    assert checked >= 20
    # And the victim's rows are all still there for the victim.
    assert client.get(f"/api/v1/customers/{ids['customer_id']}", headers=victim.auth()).status_code == 200
    assert client.get(f"/api/v1/orders/{ids['order_id']}", headers=victim.auth()).status_code == 200
    notes = client.get(f"/api/v1/customers/{ids['customer_id']}/notes", headers=victim.auth()).json()
    assert [n["id"] for n in notes] == [ids["note_id"]]
