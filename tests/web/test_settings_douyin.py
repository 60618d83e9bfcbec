"""The Douyin connection in the console: DouyinAppIn and ``configure_douyin`` as the API; secrets encrypted,
never shown back, kept when their field is left empty; a webhook signed with the stored secret is accepted."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from tests.leads.test_intake import SECRET_KEY, comment_body, counts, post

from siyu.kit.crypto import decrypt_secret
from siyu.leads import service

from .settings_fixtures import console_login, field_error


def test_connect_douyin_keep_the_secret_and_take_a_webhook(client: TestClient, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    csrf = console_login(client, f"admin@{tenant.slug}.test")
    page = client.get("/settings/douyin")
    assert (
        page.status_code == 200 and f"/hooks/douyin/{tenant.slug}" in page.text and "尚未对接。" in page.text
    )
    form = {"csrf_token": csrf, "client_key": "awtestclientkey", "account_open_id": "_000brandaccount"}
    missing = client.post("/settings/douyin", data=form | {"api_base_url": "ftp://x"})
    assert missing.status_code == 422
    assert field_error(missing.text, "client_secret") == "请填写：抖音用它给每个 Webhook 请求签名。"
    assert 'value="awtestclientkey"' in missing.text and service.douyin_app(db, tenant.org_id) is None
    bad_url = client.post("/settings/douyin", data=form | {"client_secret": "s3", "api_base_url": "ftp://x"})
    assert bad_url.status_code == 422
    assert field_error(bad_url.text, "api_base_url") == "请填写以 http:// 或 https:// 开头的地址。"

    saved = client.post(
        "/settings/douyin", data=form | {"client_secret": "douyin-test-secret", "access_token": "act.123"}
    )
    assert saved.status_code == 200 and "已对接" in saved.text
    assert "douyin-test-secret" not in saved.text and "act.123" not in saved.text
    # Saved again with the secret fields empty: both are kept.
    again = client.post("/settings/douyin", data=form | {"account_open_id": "_000other"})
    assert again.status_code == 200
    db.expire_all()
    app = service.douyin_app(db, tenant.org_id)
    assert app is not None and app.account_open_id == "_000other"
    assert decrypt_secret(app.client_secret_enc, SECRET_KEY) == "douyin-test-secret"
    assert decrypt_secret(app.access_token_enc, SECRET_KEY) == "act.123"
    assert post(client, tenant.slug, comment_body("求资料")).status_code == 200
    assert counts(db)[1] == 1

    removed = client.post("/settings/douyin", data=form | {"remove_token": "on"})
    assert removed.status_code == 200 and "无法发出回复" in removed.text
    db.expire_all()
    assert service.douyin_app(db, tenant.org_id).access_token_enc == ""  # type: ignore[union-attr]


def test_the_api_still_needs_the_client_secret(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    answer = client.put(
        "/api/v1/leads-config/douyin", json={"client_key": "k", "client_secret": ""}, headers=tenant.auth()
    )
    assert answer.status_code == 422
