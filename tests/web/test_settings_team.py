"""Users, roles and API tokens in the console: the API's rules (UserIn, TokenIn, the tenancy service) with the
reasons in words; a deactivated user's session and tokens die at once; a token's secret is shown once."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.tenancy.models import ApiToken, Role, User

from .settings_fixtures import console_login, field_error


def _user(db: Session, email: str) -> User:
    db.expire_all()
    return db.scalars(select(User).where(User.email == email)).one()


def test_add_user_refusals_in_chinese_and_the_password_never_echoed(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    csrf = console_login(client, f"admin@{tenant.slug}.test")
    page = client.post(
        "/settings/users",
        data={
            "csrf_token": csrf,
            "email": "not-an-email",
            "name": "小王",
            "password": "short",
            "role": "operator",
        },
    )
    assert page.status_code == 422
    assert field_error(page.text, "password") == "至少 8 个字符。"
    assert 'value="小王"' in page.text and "short" not in page.text
    page = client.post(
        "/settings/users",
        data={
            "csrf_token": csrf,
            "email": "not-an-email",
            "name": "小王",
            "password": "longenough",
            "role": "operator",
        },
    )
    assert (
        page.status_code == 422
        and field_error(page.text, "email") == "请填写有效的邮箱地址，例如 name@example.com。"
    )
    page = client.post(
        "/settings/users",
        data={
            "csrf_token": csrf,
            "email": f"owner@{tenant.slug}.test",
            "name": "x",
            "password": "longenough",
        },
    )
    assert page.status_code == 409 and field_error(page.text, "email") == "已有成员使用这个邮箱登录。"
    page = client.post(
        "/settings/users",
        data={
            "csrf_token": csrf,
            "email": "boss@x.test",
            "name": "x",
            "password": "longenough",
            "role": "owner",
        },
    )
    assert page.status_code == 403 and field_error(page.text, "role") == "只有所有者才能把别人设为所有者。"


def test_roles_and_deactivation_follow_the_api_rules(client: TestClient, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    csrf = console_login(client, f"admin@{tenant.slug}.test")
    added = client.post(
        "/settings/users",
        data={"csrf_token": csrf, "email": "Xiaowang@Brand.test", "name": "小王", "password": "longenough"},
    )
    assert added.status_code == 200 and "已添加 小王" in added.text
    new = _user(db, "xiaowang@brand.test")
    assert new.role == Role.operator and new.is_active

    promoted = client.post(f"/settings/users/{new.id}", data={"csrf_token": csrf, "role": "admin"})
    assert promoted.status_code == 200 and _user(db, "xiaowang@brand.test").role == Role.admin
    owner = client.post(f"/settings/users/{tenant.owner_id}", data={"csrf_token": csrf, "role": "operator"})
    assert owner.status_code == 403
    assert field_error(owner.text, f"user-{tenant.owner_id}") == "只有所有者才能把别人设为所有者。"
    myself = client.post(
        f"/settings/users/{tenant.admin_id}", data={"csrf_token": csrf, "is_active": "false"}
    )
    assert field_error(myself.text, f"user-{tenant.admin_id}") == "不能停用你自己。"

    # The operator is logged in elsewhere and has a token: deactivation ends both at once.
    other = TestClient(client.app)
    console_login(other, f"operator@{tenant.slug}.test")
    assert other.get("/settings/tokens").status_code == 200
    off = client.post(
        f"/settings/users/{tenant.operator_id}", data={"csrf_token": csrf, "is_active": "false"}
    )
    assert off.status_code == 200 and "已停用" in off.text
    assert other.get("/settings/tokens", follow_redirects=False).status_code == 303
    assert client.get("/api/v1/me", headers=tenant.auth("operator")).status_code == 401
    on = client.post(f"/settings/users/{tenant.operator_id}", data={"csrf_token": csrf, "is_active": "true"})
    assert on.status_code == 200
    assert client.get("/api/v1/me", headers=tenant.auth("operator")).status_code == 200


def test_the_last_owner_stays_an_owner_through_the_api_too(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    answer = client.patch(
        f"/api/v1/users/{tenant.owner_id}", json={"role": "admin"}, headers=tenant.auth("owner")
    )
    assert answer.status_code == 409 and answer.json()["field"] == "role"
    answer = client.patch(
        f"/api/v1/users/{tenant.operator_id}", json={"role": "bogus"}, headers=tenant.auth()
    )
    assert answer.status_code == 422
    answer = client.patch(
        f"/api/v1/users/{tenant.operator_id}", json={"is_active": False}, headers=tenant.auth()
    )
    assert answer.status_code == 200 and answer.json()["is_active"] is False


def test_a_token_is_shown_once_works_and_can_be_revoked(client: TestClient, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    csrf = console_login(client, f"operator@{tenant.slug}.test")
    empty = client.post("/settings/tokens", data={"csrf_token": csrf, "name": ""})
    assert empty.status_code == 422 and field_error(empty.text, "name") == "请填写此项。"
    made = client.post("/settings/tokens", data={"csrf_token": csrf, "name": "ERP 同步"})
    match = re.search(r'id="token-value">([^<]+)<', made.text)
    assert match
    plaintext = match.group(1)
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {plaintext}"}).status_code == 200
    again = client.get("/settings/tokens")
    assert "ERP 同步" in again.text and plaintext not in again.text
    token = db.scalars(select(ApiToken).where(ApiToken.name == "ERP 同步")).one()
    # Another user's token is not the operator's to revoke: it is as if it did not exist.
    admin_token = db.scalars(select(ApiToken).where(ApiToken.user_id == tenant.admin_id)).first()
    assert admin_token is not None
    assert (
        client.post(f"/settings/tokens/{admin_token.id}/revoke", data={"csrf_token": csrf}).status_code == 404
    )
    revoked = client.post(f"/settings/tokens/{token.id}/revoke", data={"csrf_token": csrf})
    assert revoked.status_code == 200 and "令牌已吊销" in revoked.text
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {plaintext}"}).status_code == 401
