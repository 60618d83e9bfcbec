"""The console's WeCom settings page: save (encrypted), test the connection in words, show the callback URL."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session
from tests.wecom.conftest import AES_KEY, SECRET, TOKEN, Control


def _login(client: TestClient, email: str, password: str = "password123") -> str:
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    res = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token.group(1), "next": "/"},
        follow_redirects=False,
    )
    assert res.status_code == 303, res.text
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)">', client.get("/").text)
    assert meta
    return meta.group(1)


def test_admin_saves_tests_and_sees_the_callback_url(
    client: TestClient, tenant, db: Session, fake: Control
) -> None:  # type: ignore[no-untyped-def]
    client.cookies.set("lang", "en")
    csrf = _login(client, f"admin@{tenant.slug}.test")
    page = client.get("/wecom/settings")
    assert page.status_code == 200
    assert f"/hooks/wecom/{tenant.slug}" in page.text
    saved = client.post(
        "/wecom/settings",
        data={
            "csrf_token": csrf,
            "corp_id": fake.corp_id,
            "secret": SECRET,
            "token": TOKEN,
            "encoding_aes_key": AES_KEY,
            "base_url": fake.base_url,
            "welcome_text": "hi",
        },
    )
    assert saved.status_code == 200 and "Saved." in saved.text
    assert SECRET not in saved.text and AES_KEY not in saved.text
    flat = " ".join(str(v) for v in db.execute(text("SELECT * FROM wecom_credentials")).one())
    assert SECRET not in flat
    tested = client.post("/wecom/settings/test", data={"csrf_token": csrf})
    assert 'data-test-ok="true"' in tested.text
    fake.post("faults", {"api": "gettoken", "errcodes": [60020]})
    tested = client.post("/wecom/settings/test", data={"csrf_token": csrf})
    assert 'data-test-ok="false"' in tested.text and "trusted IP" in tested.text
    bad = client.post(
        "/wecom/settings", data={"csrf_token": csrf, "corp_id": fake.corp_id, "encoding_aes_key": "short"}
    )
    assert bad.status_code == 422 and 'data-field="encoding_aes_key"' in bad.text


def test_operators_cannot_open_the_settings(client: TestClient, tenant) -> None:  # type: ignore[no-untyped-def]
    _login(client, f"operator@{tenant.slug}.test")
    assert client.get("/wecom/settings").status_code == 403
