"""The console's WeCom settings page: save (encrypted), test the connection in words, show the callback URL."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session
from tests.wecom.conftest import AES_KEY, SECRET, TOKEN, Control

from siyu.app import create_app
from siyu.integrations.wecom.fake_state import DEFAULT_CALLBACK_AES_KEY, DEFAULT_CALLBACK_TOKEN
from siyu.kit.settings import Settings


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


def _field_value(page: str, name: str) -> str:
    found = re.search(rf'<input name="{name}"[^>]*?value="([^"]*)"', page, flags=re.S)
    assert found, name
    return html.unescape(found.group(1))


def test_a_refused_save_says_why_in_chinese_in_red_and_keeps_what_was_typed(
    client: TestClient, tenant, fake: Control
) -> None:  # type: ignore[no-untyped-def]
    client.cookies.set("lang", "zh_CN")
    csrf = _login(client, f"admin@{tenant.slug}.test")
    typed = {
        "corp_id": fake.corp_id,
        "secret": SECRET,
        "token": TOKEN,
        "encoding_aes_key": "short-key",
        "base_url": fake.base_url,
        "welcome_text": "你好，欢迎 <b>光临</b>",
    }
    bad = client.post("/wecom/settings", data={"csrf_token": csrf, **typed})
    assert bad.status_code == 422
    alert = re.search(r'<p class="alert" role="alert" data-field="encoding_aes_key">([^<]+)</p>', bad.text)
    assert alert, bad.text
    assert "43 位" in alert.group(1) and "encoding_aes_key" not in alert.group(1)
    assert 'class="notice' not in bad.text  # nothing green on a refused save
    for name in ("corp_id", "secret", "token", "encoding_aes_key", "base_url"):
        assert _field_value(bad.text, name) == typed[name]
    assert "你好，欢迎 &lt;b&gt;光临&lt;/b&gt;</textarea>" in bad.text

    # The first save needs the secrets: the missing one is named, in words.
    missing = client.post(
        "/wecom/settings", data={"csrf_token": csrf, **typed, "secret": "", "encoding_aes_key": AES_KEY}
    )
    assert missing.status_code == 422
    assert 'data-field="secret">请填写 Secret' in missing.text
    assert _field_value(missing.text, "token") == TOKEN


def test_a_failed_connection_test_is_red_and_in_words(client: TestClient, tenant, fake: Control) -> None:  # type: ignore[no-untyped-def]
    client.cookies.set("lang", "zh_CN")
    csrf = _login(client, f"admin@{tenant.slug}.test")
    saved = client.post(
        "/wecom/settings",
        data={
            "csrf_token": csrf,
            "corp_id": fake.corp_id,
            "secret": "a-wrong-secret",
            "token": TOKEN,
            "encoding_aes_key": AES_KEY,
            "base_url": fake.base_url,
        },
    )
    assert saved.status_code == 200 and '<p class="notice success" role="status">已保存' in saved.text
    tested = client.post("/wecom/settings/test", data={"csrf_token": csrf})
    failed = re.search(
        r'<p class="alert" role="alert" data-test-ok="false">(.+?)</p>', tested.text, flags=re.S
    )
    assert failed, tested.text
    assert "Secret 不正确" in failed.group(1) and "errcode 40001" in failed.group(1)
    assert "invalid credential" not in tested.text and "The secret is wrong" not in tested.text
    assert 'data-last-test-ok="false"' in tested.text


def test_demo_mode_tells_a_newcomer_what_to_enter(engine, tmp_path, tenant, fake: Control) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=str(engine.url.render_as_string(False)),
        secret_key="test-secret-key",
        wecom_fake_url=fake.base_url,
    )
    with TestClient(create_app(settings, engine=engine)) as client:
        client.cookies.set("lang", "zh_CN")
        csrf = _login(client, f"admin@{tenant.slug}.test")
        page = client.get("/wecom/settings").text
        shown = dict(re.findall(r'<code class="mono" data-fake="(\w+)">([^<]+)</code>', page))
        assert shown == {
            "corp_id": fake.corp_id,
            "secret": SECRET,
            "token": DEFAULT_CALLBACK_TOKEN,
            "encoding_aes_key": DEFAULT_CALLBACK_AES_KEY,
            "base_url": fake.base_url,
        }
        # What the page says to enter is what connects.
        client.post("/wecom/settings", data={"csrf_token": csrf, **shown})
        tested = client.post("/wecom/settings/test", data={"csrf_token": csrf})
        assert 'data-test-ok="true"' in tested.text and "连接正常" in tested.text

    settings.wecom_fake_url = "http://127.0.0.1:9"  # nothing listens on the discard port
    with TestClient(create_app(settings, engine=engine)) as client:
        client.cookies.set("lang", "zh_CN")
        _login(client, f"admin@{tenant.slug}.test")
        page = client.get("/wecom/settings").text
        assert "没有响应" in page and "siyu wecom fake-server" in page


def test_the_sidebar_app_agent_id_is_saved_and_checked(
    client: TestClient, tenant, fake: Control, db: Session
) -> None:  # type: ignore[no-untyped-def]
    client.cookies.set("lang", "zh_CN")
    csrf = _login(client, f"admin@{tenant.slug}.test")
    form = {
        "csrf_token": csrf,
        "corp_id": fake.corp_id,
        "secret": SECRET,
        "token": TOKEN,
        "encoding_aes_key": AES_KEY,
        "base_url": fake.base_url,
    }
    bad = client.post("/wecom/settings", data={**form, "agent_id": "app-1"})
    assert bad.status_code == 422 and 'data-field="agent_id">AgentId 是' in bad.text
    assert _field_value(bad.text, "agent_id") == "app-1"
    saved = client.post("/wecom/settings", data={**form, "agent_id": "1000002"})
    assert saved.status_code == 200 and _field_value(saved.text, "agent_id") == "1000002"
    assert f"/sidebar/{tenant.slug}/" in saved.text
    assert db.execute(text("SELECT agent_id FROM wecom_credentials")).scalar_one() == "1000002"
