"""Douyin as the platform behaves, through the fake Douyin server and the live app.

URL verification: the documented request is ``{"event": "verify_webhook", "client_key": "", "content": {"challenge": N}}``:
an empty client key, and possibly no X-Douyin-Signature. Without an answer the webhook URL cannot be
saved in Douyin's console. Comment events name the commenter by open_id only: no nickname, no avatar.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.wecom.conftest import console_login

from siyu.integrations.douyin import webhook as dy
from siyu.integrations.douyin.fake_server import FakeDouyinServer
from siyu.kit.loopback import LoopbackServer
from siyu.leads import service
from siyu.leads.endpoints import warm_classifier
from siyu.leads.models import WebhookReceipt

SECRET_KEY = "test-secret-key"  # the app fixture's secret key


@pytest.fixture
def douyin() -> Iterator[FakeDouyinServer]:
    with FakeDouyinServer() as server:
        yield server


@pytest.mark.slow
def test_the_documented_verification_is_answered_signed_or_not(
    app: Any, db: Session, tenant: Any, douyin: FakeDouyinServer
) -> None:
    st = douyin.state
    service.configure_douyin(
        db,
        tenant.org_id,
        SECRET_KEY,
        client_key=st.client_key,
        client_secret=st.client_secret,
        account_open_id=st.account_open_id,
        access_token=st.access_token,
        api_base_url=douyin.base_url,
    )
    db.commit()
    # Fitting the intent model inside the first webhook outlasts Douyin's timeout on a busy machine.
    warm_classifier(app.state.settings)
    with (
        LoopbackServer(app, name="siyu") as server,
        httpx.Client(base_url=douyin.base_url, timeout=120) as control,
    ):
        hook = f"{server.base_url}/hooks/douyin/{tenant.slug}"
        st.webhook_url = hook
        for signed in (True, False):
            sent = control.post("/_control/verify", json={"signed": signed}).json()
            body = json.loads(sent["body"])
            assert body["client_key"] == "" and bool(sent["signature"]) is signed
            assert sent["status"] == 200, sent
            assert json.loads(sent["answer"]) == {"challenge": body["content"]["challenge"]}

        # A signature that is there must still match; a client key that is named must be this app's.
        verify = json.dumps(
            {"event": "verify_webhook", "client_key": "", "content": {"challenge": 7}}
        ).encode()
        forged = httpx.post(hook, content=verify, headers={dy.SIGNATURE_HEADER: "0" * 40}, timeout=10)
        assert forged.status_code == 401, forged.text
        other = json.dumps({"event": "verify_webhook", "client_key": "awother", "content": {"challenge": 7}})
        assert httpx.post(hook, content=other.encode(), timeout=10).status_code == 403
        # Everything but the verification still needs Douyin's signature and this app's client key.
        st.webhook_url = hook
        comment = control.post("/_control/comment", json={"content": "求资料"}).json()
        assert comment["status"] == 200, comment
        unsigned = httpx.post(hook, content=comment["body"].encode(), timeout=10)
        assert unsigned.status_code == 401, unsigned.text
        no_key = json.loads(comment["body"]) | {"client_key": ""}
        signed = json.dumps(no_key).encode()
        refused = httpx.post(
            hook, content=signed, headers={dy.SIGNATURE_HEADER: dy.sign(st.client_secret, signed)}, timeout=10
        )
        assert refused.status_code == 400 and "client_key" in refused.text
    # Answering the verifications stored nothing.
    assert (
        db.scalar(
            select(func.count()).select_from(WebhookReceipt).where(WebhookReceipt.event == "verify_webhook")
        )
        == 0
    )


@pytest.mark.slow
def test_a_douyin_commenter_has_no_name_and_the_inbox_says_why(
    app: Any, client: Any, db: Session, tenant: Any, douyin: FakeDouyinServer
) -> None:
    st = douyin.state
    service.configure_douyin(
        db,
        tenant.org_id,
        SECRET_KEY,
        client_key=st.client_key,
        client_secret=st.client_secret,
        account_open_id=st.account_open_id,
        access_token=st.access_token,
        api_base_url=douyin.base_url,
    )
    db.commit()
    warm_classifier(app.state.settings)
    with (
        LoopbackServer(app, name="siyu") as server,
        httpx.Client(base_url=douyin.base_url, timeout=120) as control,
    ):
        st.webhook_url = f"{server.base_url}/hooks/douyin/{tenant.slug}"
        sent = control.post(
            "/_control/comment", json={"content": "求资料", "comment_user_id": "_000fan7"}
        ).json()
        assert sent["status"] == 200, sent
    content = json.loads(json.loads(sent["body"])["content"])
    assert "nick_name" not in content and "avatar" not in content  # as Douyin sends it
    client.cookies.set("lang", "en")
    console_login(client, f"operator@{tenant.slug}.test")
    inbox = client.get("/leads/inbox").text
    assert "求资料" in inbox and "data-commenter-unnamed" in inbox
    assert "No name (Douyin does not send it)" in inbox and "_000fan7" in inbox
    client.cookies.set("lang", "zh_CN")
    assert "无昵称（抖音不提供）" in client.get("/leads/inbox").text
