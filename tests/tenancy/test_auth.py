"""Login-free API auth: tokens, roles, and organizations that never see each other."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_me_requires_credentials(client: TestClient) -> None:
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]


def test_me_with_token(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/api/v1/me", headers=tenant.auth("operator"))
    assert response.status_code == 200
    body = response.json()
    assert body["org_id"] == tenant.org_id
    assert body["role"] == "operator"


def test_bad_token_is_rejected(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/api/v1/me", headers={"Authorization": "Bearer siyu_nope"})
    assert response.status_code == 401


def test_revoked_token_stops_working(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    created = client.post("/api/v1/tokens", json={"name": "ci"}, headers=tenant.auth("admin"))
    assert created.status_code == 201
    plaintext = created.json()["token"]
    assert plaintext.startswith("siyu_")
    headers = {"Authorization": f"Bearer {plaintext}"}
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert client.delete(f"/api/v1/tokens/{created.json()['id']}", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_tokens_are_stored_hashed(client: TestClient, tenant, db) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from siyu.tenancy.models import ApiToken

    hashes = list(db.scalars(select(ApiToken.token_hash)))
    assert hashes and tenant.admin_token not in hashes
    assert all(len(h) == 64 for h in hashes)


def test_operator_cannot_create_users(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    body = {"email": "x@y.test", "name": "X", "password": "password123", "role": "operator"}
    assert client.post("/api/v1/users", json=body, headers=tenant.auth("operator")).status_code == 403
    assert client.post("/api/v1/users", json=body, headers=tenant.auth("admin")).status_code == 201


def test_admin_cannot_create_owner(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    body = {"email": "o@y.test", "name": "O", "password": "password123", "role": "owner"}
    response = client.post("/api/v1/users", json=body, headers=tenant.auth("admin"))
    assert response.status_code == 403
    assert response.json()["field"] == "role"


def test_short_password_names_the_field(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    body = {"email": "s@y.test", "name": "S", "password": "short", "role": "operator"}
    response = client.post("/api/v1/users", json=body, headers=tenant.auth("admin"))
    assert response.status_code == 422
    assert "password" in str(response.json()["detail"])


def test_users_of_other_orgs_are_invisible(client: TestClient, make_tenant) -> None:  # type: ignore[no-untyped-def]
    a, b = make_tenant("alpha"), make_tenant("beta")
    emails = {u["email"] for u in client.get("/api/v1/users", headers=a.auth()).json()}
    assert emails and all(e.endswith("@alpha.test") for e in emails)
    token_b = client.get("/api/v1/tokens", headers=b.auth()).json()[0]["id"]
    assert client.delete(f"/api/v1/tokens/{token_b}", headers=a.auth()).status_code == 404
