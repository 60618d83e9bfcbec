"""The channels API: pools, codes with QR images, routing, alerts, reports, and tenancy."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from siyu.accounts.models import Account, AccountKind
from siyu.channels import service


def _accounts(db: Session, org_id: int, n: int) -> list[int]:
    ids = []
    for i in range(n):
        a = Account(
            org_id=org_id, kind=AccountKind.wecom_member, external_id=f"u{i}", name=f"u{i}", soft_cap=2
        )
        db.add(a)
        db.flush()
        ids.append(a.id)
    db.commit()
    return ids


def test_pool_code_qr_route_and_reports(client, db: Session, make_tenant) -> None:  # type: ignore[no-untyped-def]
    service.forget_routers()
    tenant = make_tenant()
    other = make_tenant()
    ids = _accounts(db, tenant.org_id, 2)
    admin, operator = tenant.auth("admin"), tenant.auth("operator")
    body = {
        "name": "Douyin",
        "rule": "round_robin",
        "members": [{"account_id": i} for i in ids],
        "warmup": [],
        "daily_cap": 50,
    }
    assert client.post("/api/v1/channels/pools", json=body, headers=operator).status_code == 403
    r = client.post("/api/v1/channels/pools", json=body, headers=admin)
    assert r.status_code == 201, r.text
    pool_id = r.json()["id"]
    bad = client.post(
        "/api/v1/channels/pools",
        json={**body, "name": "x", "members": [{"account_id": 999999}]},
        headers=admin,
    )
    assert bad.status_code == 422 and bad.json()["field"] == "members"
    code = {"name": "Douyin profile", "state": "dy-profile", "channel": "douyin", "pool_id": pool_id}
    too_long = client.post("/api/v1/channels/codes", json={**code, "state": "x" * 31}, headers=admin)
    assert too_long.status_code == 422
    no_wecom = client.post("/api/v1/channels/codes", json={**code, "carrier": "wecom"}, headers=admin)
    assert no_wecom.status_code == 422 and no_wecom.json()["field"] == "carrier"
    r = client.post("/api/v1/channels/codes", json=code, headers=admin)
    assert r.status_code == 201, r.text
    code_id = r.json()["id"]
    assert r.json()["qr_url"].endswith(r.json()["config_id"])
    png = client.get(f"/api/v1/channels/codes/{code_id}/qr.png", headers=operator)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    svg = client.get(f"/api/v1/channels/codes/{code_id}/qr.svg", headers=operator)
    assert svg.status_code == 200 and b"<svg" in svg.content
    assert client.get(f"/api/v1/channels/codes/{code_id}/qr.gif", headers=operator).status_code == 422
    # Routing reserves a slot with no contact behind it: operators may not, or they could use up the day.
    assert (
        client.post(f"/api/v1/channels/pools/{pool_id}/route", json={}, headers=operator).status_code == 403
    )
    picks = [client.post(f"/api/v1/channels/pools/{pool_id}/route", json={}, headers=admin) for _ in range(5)]
    assert [p.status_code for p in picks] == [200, 200, 200, 200, 409]
    assert [p.json()["account_id"] for p in picks[:4]] == [ids[0], ids[1], ids[0], ids[1]]
    report = client.get(
        "/api/v1/channels/reports/codes?date_from=2026-01-01&date_to=2026-12-31", headers=operator
    )
    assert report.status_code == 200 and report.json()[0]["adds"] == 0
    # Operators see the health of their own accounts only (these have no operator); admins see all.
    assert client.get("/api/v1/channels/health", headers=operator).json() == []
    assert [h["account_id"] for h in client.get("/api/v1/channels/health", headers=admin).json()] == ids
    assert client.post("/api/v1/channels/alerts/scan", headers=admin).status_code == 200
    # Another organization's pool and code answer 404 like missing ones.
    theirs = other.auth("admin")
    assert client.get(f"/api/v1/channels/codes/{code_id}", headers=theirs).status_code == 404
    assert client.get(f"/api/v1/channels/codes/{code_id}/qr.png", headers=theirs).status_code == 404
    assert client.get(f"/api/v1/channels/pools/{pool_id}", headers=theirs).status_code == 404
    assert client.post(f"/api/v1/channels/pools/{pool_id}/route", json={}, headers=theirs).status_code == 404
    assert client.get("/api/v1/channels/codes", headers=theirs).json() == []


@pytest.mark.slow
def test_console_page_lists_codes_health_and_chart(client, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    import re

    service.forget_routers()
    ids = _accounts(db, tenant.org_id, 1)
    pool = client.post(
        "/api/v1/channels/pools",
        json={"name": "P", "members": [{"account_id": ids[0]}]},
        headers=tenant.auth("admin"),
    ).json()
    client.post(
        "/api/v1/channels/codes",
        json={"name": "Store flyer", "state": "store-1", "channel": "store", "pool_id": pool["id"]},
        headers=tenant.auth("admin"),
    )
    assert client.get("/channels", follow_redirects=False).status_code in (303, 307)
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    client.post(
        "/login",
        data={
            "email": f"admin@{tenant.slug}.test",
            "password": "password123",
            "csrf_token": token.group(1),
            "next": "/",
        },
        follow_redirects=False,
    )
    page = client.get("/channels")
    assert page.status_code == 200
    assert "Store flyer" in page.text and 'id="added-chart-data"' in page.text
    assert f'data-account-id="{ids[0]}"' in page.text
    qr = client.get(re.search(r'<img src="([^"]+)"', page.text).group(1))  # type: ignore[union-attr]
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/svg+xml"
