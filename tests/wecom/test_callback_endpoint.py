"""The callback endpoint end to end: the fake WeCom server calls the app served on loopback."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from siyu.accounts.models import Account
from siyu.customers.models import Customer, CustomerIdentity, FollowRelation, FollowStatus, IdentityKind
from siyu.integrations.wecom.crypto import CallbackCrypto, build_event_xml, parse_event_xml
from siyu.wecom.models import InboxItem, WelcomeSend

from .conftest import AES_KEY, TOKEN, WELCOME, Wired


def _inbox_count(db: Session) -> int:
    db.expire_all()
    return int(db.scalar(select(func.count()).select_from(InboxItem)) or 0)


def _customer(db: Session, external_userid: str) -> Customer:
    db.expire_all()
    ident = db.scalar(
        select(CustomerIdentity).where(
            CustomerIdentity.kind == IdentityKind.wecom_external_userid,
            CustomerIdentity.value == external_userid,
        )
    )
    assert ident is not None, f"no customer for {external_userid}"
    customer = db.get(Customer, ident.customer_id)
    assert customer is not None
    return customer


def _follow(db: Session, customer_id: int, userid: str) -> FollowRelation:
    rel = db.scalar(
        select(FollowRelation)
        .join(Account, Account.id == FollowRelation.account_id)
        .where(FollowRelation.customer_id == customer_id, Account.external_id == userid)
    )
    assert rel is not None
    return rel


def _post_event(wired: Wired, fields: dict[str, object]) -> httpx.Response:
    """POST one event encrypted exactly as WeCom does (fresh nonce and ciphertext each time)."""
    crypto = CallbackCrypto(TOKEN, AES_KEY, wired.fake.corp_id)
    body, params = crypto.encrypt_request(build_event_xml(fields))
    return httpx.post(wired.callback_url, params=params, content=body.encode(), timeout=10)


def test_url_verification_answers_exactly_the_plaintext(wired: Wired) -> None:
    assert wired.fake.post("callback/verify")["ok"] is True
    crypto = CallbackCrypto(TOKEN, AES_KEY, wired.fake.corp_id)
    params = crypto.verification_request("1688559123456789")
    res = httpx.get(wired.callback_url, params=params, timeout=5)
    assert res.status_code == 200
    assert res.content == b"1688559123456789"


def test_url_verification_with_a_bad_signature_is_403(wired: Wired) -> None:
    params = CallbackCrypto(TOKEN, AES_KEY, wired.fake.corp_id).verification_request("42")
    params["msg_signature"] = "0" * 40
    res = httpx.get(wired.callback_url, params=params, timeout=5)
    assert res.status_code == 403
    assert "42" not in res.text


def test_channel_code_scan_sets_source_follow_and_sends_the_welcome(wired: Wired, db: Session) -> None:
    wired.fake.post("members", {"members": [{"userid": "wangwu"}]})
    client_way = wired.fake.post("contacts", {"contacts": []})  # noqa: F841 - fake warm-up, no events
    from siyu.wecom.credentials import client_for, load_plain

    creds = load_plain(db, wired.org_id, "test-secret-key")
    code = client_for(creds).create_channel_code(["zhangsan"], "douyin_live")
    scan = wired.fake.post("scan", {"config_id": code.config_id, "name": "小红"})
    assert scan["delivery"]["status"] == 200, scan

    customer = _customer(db, scan["external_userid"])
    assert customer.source == "douyin_live"
    assert customer.name == "小红"
    rel = _follow(db, customer.id, "zhangsan")
    assert rel.status == FollowStatus.active
    assert rel.state == "douyin_live"
    account = db.get(Account, rel.account_id)
    assert account is not None and account.friend_count == 1
    item = db.scalar(select(InboxItem))
    assert item is not None and item.processed_at is not None and item.attempts == 1
    sent = wired.fake.server.state.welcome_messages
    assert [w["text"] for w in sent] == [WELCOME]
    assert db.scalar(select(WelcomeSend.status)) == "sent"


def test_the_same_callback_delivered_three_times_has_one_effect(wired: Wired, db: Session) -> None:
    created = wired.fake.post(
        "contacts",
        {
            "contacts": [
                {"name": "老王", "follow": [{"userid": "lisi", "state": "taobao_card"}]},
            ]
        },
    )
    eid = created["external_userids"][0]
    fields = {
        "ToUserName": wired.fake.corp_id,
        "FromUserName": "sys",
        "CreateTime": int(time.time()),
        "MsgType": "event",
        "Event": "change_external_contact",
        "ChangeType": "add_external_contact",
        "UserID": "lisi",
        "ExternalUserID": eid,
        "State": "taobao_card",
        "WelcomeCode": "WELCOME-ONCE-1",
    }
    answers = [_post_event(wired, fields) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert _inbox_count(db) == 1
    customer = _customer(db, eid)
    assert db.scalar(select(func.count()).select_from(Customer)) == 1
    assert db.scalar(select(func.count()).select_from(FollowRelation)) == 1
    assert _follow(db, customer.id, "lisi").status == FollowStatus.active
    assert db.scalar(select(Account.friend_count).where(Account.external_id == "lisi")) == 1
    assert len(wired.fake.server.state.welcome_messages) == 1


def test_bad_signature_is_403_and_nothing_is_stored(wired: Wired, db: Session) -> None:
    crypto = CallbackCrypto(TOKEN, AES_KEY, wired.fake.corp_id)
    body, params = crypto.encrypt_request(
        build_event_xml({"Event": "change_external_contact", "ChangeType": "add_external_contact"})
    )
    params["msg_signature"] = params["msg_signature"][::-1]
    res = httpx.post(wired.callback_url, params=params, content=body.encode(), timeout=5)
    assert res.status_code == 403
    # Encrypted for another corp id (wrong receiver): also refused.
    other = CallbackCrypto(TOKEN, AES_KEY, "wwsomeoneelse000")
    body, params = other.encrypt_request(build_event_xml({"Event": "change_external_contact"}))
    assert httpx.post(wired.callback_url, params=params, content=body.encode(), timeout=5).status_code == 403
    assert _inbox_count(db) == 0


def test_unknown_organization_is_404(wired: Wired, db: Session) -> None:
    crypto = CallbackCrypto(TOKEN, AES_KEY, wired.fake.corp_id)
    body, params = crypto.encrypt_request(build_event_xml({"Event": "change_external_contact"}))
    res = httpx.post(
        f"{wired.app_url}/hooks/wecom/no-such-org", params=params, content=body.encode(), timeout=5
    )
    assert res.status_code == 404
    assert _inbox_count(db) == 0


def test_deletion_before_addition_ends_deleted(wired: Wired, db: Session) -> None:
    created = wired.fake.post(
        "contacts", {"contacts": [{"name": "迟到", "follow": [{"userid": "zhangsan"}]}]}
    )
    eid = created["external_userids"][0]
    added_at = int(time.time()) - 30
    # The customer deletes the member: WeCom's del_follow_user reaches us first...
    assert (
        wired.fake.post(f"contacts/{eid}/delete", {"userid": "zhangsan", "by": "customer"})["status"] == 200
    )
    customer = _customer(db, eid)
    rel = _follow(db, customer.id, "zhangsan")
    assert rel.status == FollowStatus.deleted_by_customer
    # ...and the (older) add arrives late: it must not bring the relation back.
    res = _post_event(
        wired,
        {
            "ToUserName": wired.fake.corp_id,
            "FromUserName": "sys",
            "CreateTime": added_at,
            "MsgType": "event",
            "Event": "change_external_contact",
            "ChangeType": "add_external_contact",
            "UserID": "zhangsan",
            "ExternalUserID": eid,
            "WelcomeCode": "late-code",
        },
    )
    assert res.status_code == 200
    db.expire_all()
    rel = _follow(db, customer.id, "zhangsan")
    assert rel.status == FollowStatus.deleted_by_customer
    assert db.scalar(select(Account.friend_count).where(Account.external_id == "zhangsan")) == 0
    assert db.scalar(select(InboxItem.error).where(InboxItem.kind.like("%add_external_contact"))) is None
    # The late welcome code was past WeCom's 20 s window: recorded as expired, never sent.
    assert db.scalar(select(WelcomeSend.status)) == "expired"
    assert wired.fake.server.state.welcome_messages == []


def test_member_deletes_then_readds_keeps_the_later_state(wired: Wired, db: Session) -> None:
    created = wired.fake.post(
        "contacts",
        {
            "emit": True,
            "contacts": [
                {"name": "回头客", "follow": [{"userid": "lisi", "createtime": int(time.time()) - 100}]},
            ],
        },
    )
    eid = created["external_userids"][0]
    wired.fake.post(f"contacts/{eid}/delete", {"userid": "lisi", "by": "member"})
    customer = _customer(db, eid)
    assert _follow(db, customer.id, "lisi").status == FollowStatus.deleted_by_staff
    # An edit of a relation that no longer exists is applied from the event without error.
    res = _post_event(
        wired,
        {
            "CreateTime": int(time.time()),
            "MsgType": "event",
            "Event": "change_external_contact",
            "ChangeType": "edit_external_contact",
            "UserID": "lisi",
            "ExternalUserID": eid,
        },
    )
    assert res.status_code == 200
    db.expire_all()
    assert db.scalar(select(func.count()).where(InboxItem.error.is_not(None))) == 0


def test_credentials_are_encrypted_at_rest_and_never_returned(client, tenant, db: Session, fake) -> None:  # type: ignore[no-untyped-def]
    secret = "s3cr3t-" + uuid.uuid4().hex
    res = client.put(
        "/api/v1/wecom/credentials",
        headers=tenant.auth("admin"),
        json={
            "corp_id": fake.corp_id,
            "secret": secret,
            "token": TOKEN,
            "encoding_aes_key": AES_KEY,
            "base_url": fake.base_url,
        },
    )
    assert res.status_code == 200, res.text
    assert secret not in res.text and AES_KEY not in res.text and TOKEN not in res.text
    assert res.json()["has_secret"] is True
    assert res.json()["callback_path"] == f"/hooks/wecom/{tenant.slug}"
    raw = db.execute(text("SELECT * FROM wecom_credentials")).one()
    flat = " ".join(str(v) for v in raw)
    assert secret not in flat and AES_KEY not in flat and TOKEN not in flat
    assert fake.corp_id in flat
    # The fake does not know this secret: the test explains WeCom's 40001 in words.
    tested = client.post("/api/v1/wecom/credentials/test", headers=tenant.auth("admin")).json()
    assert tested["ok"] is False and tested["errcode"] == 40001
    assert "secret is wrong" in tested["message"]
    # Updating without the secret keeps the stored one; the right secret then connects.
    fake.post("config", {"secrets": [secret]})
    res = client.put(
        "/api/v1/wecom/credentials",
        headers=tenant.auth("admin"),
        json={"corp_id": fake.corp_id, "base_url": fake.base_url},
    )
    assert res.status_code == 200
    tested = client.post("/api/v1/wecom/credentials/test", headers=tenant.auth("admin")).json()
    assert tested == {"ok": True, "errcode": 0, "message": "Connected: WeCom issued an access token."}


def test_credentials_api_is_admin_only_and_validates(client, tenant, fake) -> None:  # type: ignore[no-untyped-def]
    body = {"corp_id": fake.corp_id, "secret": "x", "token": TOKEN, "encoding_aes_key": AES_KEY}
    assert (
        client.put("/api/v1/wecom/credentials", headers=tenant.auth("operator"), json=body).status_code == 403
    )
    assert client.get("/api/v1/wecom/credentials", headers=tenant.auth("admin")).status_code == 404
    bad = client.put(
        "/api/v1/wecom/credentials", headers=tenant.auth("admin"), json={**body, "encoding_aes_key": "!" * 43}
    )
    assert bad.status_code == 422 and bad.json()["field"] == "encoding_aes_key"
    missing = client.put(
        "/api/v1/wecom/credentials",
        headers=tenant.auth("admin"),
        json={"corp_id": fake.corp_id, "token": TOKEN},
    )
    assert missing.status_code == 422 and missing.json()["field"] == "secret"


def test_tags_and_groups_follow_their_events(wired: Wired, db: Session) -> None:
    from siyu.customers.models import CustomerTag, Tag, TagGroup
    from siyu.groups.models import CustomerGroup, GroupStatus

    tags = wired.fake.post("tags", {"groups": [{"group_name": "意向", "tags": ["高意向", "低意向"]}]})[
        "groups"
    ][0]
    high = tags["tags"]["高意向"]
    created = wired.fake.post(
        "contacts",
        {
            "emit": True,
            "contacts": [
                {"name": "标签客", "follow": [{"userid": "zhangsan", "tag_ids": [high]}]},
            ],
        },
    )
    customer = _customer(db, created["external_userids"][0])
    tag = db.scalar(select(Tag).where(Tag.external_id == high))
    assert tag is not None and tag.name == "高意向"
    assert db.scalar(select(CustomerTag.tag_id).where(CustomerTag.customer_id == customer.id)) == tag.id
    # WeCom deletes the tag group: the mirrored group goes, and the customer's tag with it.
    _post_event(
        wired,
        {
            "CreateTime": int(time.time()),
            "MsgType": "event",
            "Event": "change_external_tag",
            "ChangeType": "delete",
            "Id": tags["group_id"],
            "TagType": "tag_group",
        },
    )
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(TagGroup)) == 0
    assert db.scalar(select(func.count()).select_from(CustomerTag)) == 0

    eid = created["external_userids"][0]
    chat = wired.fake.post(
        "groups",
        {
            "emit": True,
            "groups": [
                {"owner": "zhangsan", "name": "7 天训练营", "members": ["lisi", eid]},
            ],
        },
    )["chat_ids"][0]
    db.expire_all()
    group = db.scalar(select(CustomerGroup).where(CustomerGroup.chat_id == chat))
    assert group is not None and group.name == "7 天训练营" and group.member_count == 3
    wired.fake.post(f"groups/{chat}/quit", {"userids": [eid], "quit_scene": 0})
    db.expire_all()
    assert db.get(CustomerGroup, group.id).member_count == 2  # type: ignore[union-attr]
    _post_event(
        wired,
        {
            "CreateTime": int(time.time()),
            "MsgType": "event",
            "Event": "change_external_chat",
            "ChangeType": "dismiss",
            "ChatId": chat,
        },
    )
    db.expire_all()
    dismissed = db.get(CustomerGroup, group.id)
    assert dismissed is not None and dismissed.status == GroupStatus.dismissed and dismissed.member_count == 0


def test_the_stored_inbox_row_carries_the_decrypted_event(wired: Wired, db: Session) -> None:
    """The endpoint's Core insert (one prepared statement, reused) writes every column of each event."""
    from siyu.integrations.wecom.crypto import parse_event_xml
    from siyu.wecom.callbacks import SOURCE, dedupe_key

    now = int(time.time())
    sent = []
    for i, change in enumerate(("edit_external_contact", "del_follow_user")):
        fields = {
            "ToUserName": wired.fake.corp_id,
            "FromUserName": "sys",
            "CreateTime": now + i,
            "MsgType": "event",
            "Event": "change_external_contact",
            "ChangeType": change,
            "UserID": "nobody",
            "ExternalUserID": f"wmROW{i}",
        }
        assert _post_event(wired, fields).status_code == 200
        sent.append(parse_event_xml(build_event_xml(fields)))
    db.expire_all()
    rows = list(db.scalars(select(InboxItem).order_by(InboxItem.id)))
    assert [r.external_key for r in rows] == [dedupe_key(e) for e in sent]
    assert [r.kind for r in rows] == [
        "change_external_contact/edit_external_contact",
        "change_external_contact/del_follow_user",
    ]
    assert [r.payload["external_user_id"] for r in rows] == ["wmROW0", "wmROW1"]
    assert all(r.org_id == wired.org_id and r.source == SOURCE for r in rows)
    assert all(r.received_at is not None and r.attempts >= 1 for r in rows)  # processed inline by the worker


def test_missing_signature_parameters_are_422_naming_the_field(wired: Wired, db: Session) -> None:
    crypto = CallbackCrypto(TOKEN, AES_KEY, wired.fake.corp_id)
    body, params = crypto.encrypt_request(build_event_xml({"Event": "change_external_contact"}))
    for name in ("msg_signature", "timestamp", "nonce"):
        res = httpx.post(
            wired.callback_url,
            params={k: v for k, v in params.items() if k != name},
            content=body.encode(),
            timeout=5,
        )
        assert res.status_code == 422 and res.json()["field"] == name
    res = httpx.post(
        wired.callback_url, params={**params, "nonce": "9" * 129}, content=body.encode(), timeout=5
    )
    assert res.status_code == 422 and res.json()["field"] == "nonce"
    assert _inbox_count(db) == 0


def test_a_concurrent_burst_with_repeats_is_stored_and_applied_once_each(wired: Wired, db: Session) -> None:
    created = wired.fake.post(
        "contacts",
        {
            "contacts": [
                {"name": f"客户{i}", "follow": [{"userid": "zhangsan", "state": "burst"}]} for i in range(20)
            ]
        },
    )
    crypto = CallbackCrypto(TOKEN, AES_KEY, wired.fake.corp_id)
    now = int(time.time())
    requests = []
    for eid in created["external_userids"]:
        xml = build_event_xml(
            {
                "ToUserName": wired.fake.corp_id,
                "FromUserName": "sys",
                "CreateTime": now,
                "MsgType": "event",
                "Event": "change_external_contact",
                "ChangeType": "add_external_contact",
                "UserID": "zhangsan",
                "ExternalUserID": eid,
                "State": "burst",
            }
        )
        requests += [crypto.encrypt_request(xml) for _ in range(3)]  # WeCom's retries: fresh nonce each

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            answers = await asyncio.gather(
                *(
                    client.post(wired.callback_url, params=params, content=body.encode())
                    for body, params in requests
                )
            )
        return [a.status_code for a in answers]

    assert asyncio.run(burst()) == [200] * 60
    assert _inbox_count(db) == 20
    assert (
        db.scalar(
            select(func.count())
            .select_from(InboxItem)
            .where(InboxItem.attempts == 1, InboxItem.processed_at.is_not(None))
        )
        == 20
    )
    assert db.scalar(select(func.count()).select_from(Customer).where(Customer.source == "burst")) == 20
    assert db.scalar(select(Account.friend_count).where(Account.external_id == "zhangsan")) == 20


def test_a_failed_batch_stores_nothing_and_fails_each_caller(app, db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    from siyu.wecom.inbox_writer import InboxWriter

    drains: list[int] = []
    writer = InboxWriter(app.state.engine, lambda: drains.append(1))
    event = parse_event_xml(
        build_event_xml(
            {
                "Event": "change_external_contact",
                "ChangeType": "edit_external_contact",
                "ExternalUserID": "wmOK",
                "CreateTime": 1_700_000_000,
            }
        )
    )

    async def stores() -> list[object]:
        # org 10**15 does not exist: its insert violates the foreign key and fails its whole batch.
        calls = [
            writer.store(tenant.org_id, {**event, "external_user_id": f"wm{i}", "raw": {"i": i}})  # type: ignore[typeddict-item]
            for i in range(10)
        ]
        calls.insert(5, writer.store(10**15, event))
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(stores())
    assert isinstance(results[5], Exception)
    stored = [r for r in results if isinstance(r, int)]
    failed = [r for r in results if isinstance(r, Exception)]
    assert len(stored) + len(failed) == 11
    assert _inbox_count(db) == len(stored)  # a failed batch left no row behind
    assert (len(drains) > 0) == (len(stored) > 0)


def test_an_oversized_body_is_413_and_nothing_is_stored(wired: Wired, db: Session) -> None:
    crypto = CallbackCrypto(TOKEN, AES_KEY, wired.fake.corp_id)
    _, params = crypto.encrypt_request(build_event_xml({"Event": "change_external_contact"}))
    res = httpx.post(
        wired.callback_url, params=params, content=b"<xml>" + b"x" * 1_000_001 + b"</xml>", timeout=10
    )
    assert res.status_code == 413
    assert _inbox_count(db) == 0


def test_base_url_may_only_name_wecom_or_an_allowed_host(client, tenant) -> None:  # type: ignore[no-untyped-def]
    body = {"corp_id": "wwssrf0001", "secret": "s", "token": "t", "encoding_aes_key": "a" * 43}
    admin = tenant.auth("admin")
    for url in (
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.5:6379",
        "https://qyapi.weixin.qq.com@evil.example",
        "https://qyapi.weixin.qq.com.evil.example",
        "http://qyapi.weixin.qq.com",
    ):
        refused = client.put("/api/v1/wecom/credentials", headers=admin, json={**body, "base_url": url})
        assert refused.status_code == 422 and refused.json()["field"] == "base_url", (url, refused.text)
    assert client.get("/api/v1/wecom/credentials", headers=admin).status_code == 404  # nothing stored
    ok = client.put(
        "/api/v1/wecom/credentials", headers=admin, json={**body, "base_url": "https://qyapi.weixin.qq.com"}
    )
    assert ok.status_code == 200, ok.text
    # The test app allows the loopback fake explicitly (SIYU_WECOM_API_HOSTS).
    fake = client.put(
        "/api/v1/wecom/credentials", headers=admin, json={**body, "base_url": "http://127.0.0.1:8970"}
    )
    assert fake.status_code == 200 and fake.json()["base_url"] == "http://127.0.0.1:8970"
