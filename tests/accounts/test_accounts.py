"""Carrier accounts: caps by kind, admin-only changes, operator visibility, tenancy."""

from __future__ import annotations

from fastapi.testclient import TestClient


def _create(client: TestClient, tenant, **overrides):  # type: ignore[no-untyped-def]
    body = {"kind": "personal_wechat", "external_id": "wxid_001", "name": "小美 1号"} | overrides
    return client.post("/api/v1/accounts", json=body, headers=tenant.auth())


def test_personal_wechat_defaults_to_field_caps(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    response = _create(client, tenant)
    assert response.status_code == 201
    body = response.json()
    assert (body["soft_cap"], body["hard_cap"], body["status"]) == (2500, 5000, "active")


def test_personal_wechat_hard_cap_cannot_pass_5000(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    response = _create(client, tenant, hard_cap=6000)
    assert response.status_code == 422
    assert response.json()["field"] == "hard_cap"


def test_wecom_hard_cap_is_configurable(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    response = _create(
        client, tenant, kind="wecom_member", external_id="zhangsan", hard_cap=20000, soft_cap=8000
    )
    assert response.status_code == 201
    assert response.json()["hard_cap"] == 20000


def test_soft_cap_above_hard_cap_is_refused(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    created = _create(client, tenant).json()
    response = client.patch(
        f"/api/v1/accounts/{created['id']}", json={"soft_cap": 4000, "hard_cap": 3000}, headers=tenant.auth()
    )
    assert response.status_code == 422
    response = client.patch(
        f"/api/v1/accounts/{created['id']}", json={"soft_cap": 5001}, headers=tenant.auth()
    )
    assert response.status_code == 422 and response.json()["field"] == "soft_cap"


def test_duplicate_external_id_conflicts(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    assert _create(client, tenant).status_code == 201
    assert _create(client, tenant).status_code == 409


def test_unknown_kind_names_the_field(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    response = _create(client, tenant, kind="qq")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == "kind"


def test_operator_sees_only_assigned_accounts(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    mine = _create(client, tenant, operator_id=tenant.operator_id).json()
    other = _create(client, tenant, external_id="wxid_002").json()
    listed = client.get("/api/v1/accounts", headers=tenant.auth("operator")).json()
    assert [a["id"] for a in listed] == [mine["id"]]
    assert client.get(f"/api/v1/accounts/{other['id']}", headers=tenant.auth("operator")).status_code == 404
    assert _create(client, tenant, external_id="wxid_003").status_code == 201
    response = client.post(
        "/api/v1/accounts",
        json={"kind": "personal_wechat", "external_id": "x", "name": "x"},
        headers=tenant.auth("operator"),
    )
    assert response.status_code == 403


def test_operator_must_belong_to_the_org(client: TestClient, make_tenant) -> None:  # type: ignore[no-untyped-def]
    a, b = make_tenant("alpha"), make_tenant("beta")
    response = _create(client, a, operator_id=b.operator_id)
    assert response.status_code == 422 and response.json()["field"] == "operator_id"


def test_other_orgs_accounts_answer_404(client: TestClient, make_tenant) -> None:  # type: ignore[no-untyped-def]
    a, b = make_tenant("alpha"), make_tenant("beta")
    account = _create(client, a).json()
    assert client.get(f"/api/v1/accounts/{account['id']}", headers=b.auth()).status_code == 404
    assert (
        client.patch(f"/api/v1/accounts/{account['id']}", json={"name": "x"}, headers=b.auth()).status_code
        == 404
    )
    assert client.get("/api/v1/accounts", headers=b.auth()).json() == []
