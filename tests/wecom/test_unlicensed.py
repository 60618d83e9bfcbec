"""Members without an interoperability licence (互通许可), through the fake WeCom server and the console.

batch/get_by_user lists such members in ``fail_info.unlicensed_userid_list`` and answers 701008 when
every member of a call lacks one. Their customers are unknown, not gone: the sync leaves them alone,
says so on the WeCom settings page, and reconciles everyone else.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.customers.models import CustomerTag, Tag
from siyu.wecom.credentials import save_credentials
from siyu.wecom.models import WeComSyncRun
from siyu.wecom.schemas import CredentialsIn

from .conftest import AES_KEY, SECRET, TOKEN, Control, active_follows, console_login, customer_of

pytestmark = [pytest.mark.own_members, pytest.mark.slow]

# Six members: the sync reads them in three batches of two (its fetch threads), so one batch is mixed
# (fail_info) and one holds only unlicensed members (701008).
MEMBERS = ["alice", "bob", "carol", "dave", "erin", "frank"]
UNLICENSED = ["bob", "carol", "dave"]


def _world(fake: Control) -> str:
    fake.post("members", {"members": [{"userid": u} for u in MEMBERS]})
    tags = fake.post("tags", {"groups": [{"group_name": "意向", "tags": ["高意向"]}]})["groups"][0]["tags"]
    fake.post(
        "contacts",
        {
            "contacts": [
                {"external_userid": f"wm_{u}", "name": f"客户{u}", "follow": [{"userid": u}]} for u in MEMBERS
            ]
            + [
                {
                    "external_userid": "wm_shared",
                    "name": "共享客户",
                    "follow": [{"userid": "alice"}, {"userid": "bob", "tag_ids": [tags["高意向"]]}],
                }
            ]
        },
    )
    return str(tags["高意向"])


def test_unlicensed_members_keep_their_customers_and_the_page_says_why(
    client: TestClient, app: Any, tenant: Any, db: Session, fake: Control, inline_worker: Any
) -> None:
    tag = _world(fake)
    save_credentials(
        db,
        tenant.org_id,
        CredentialsIn(  # type: ignore[arg-type]
            corp_id=fake.corp_id, secret=SECRET, token=TOKEN, encoding_aes_key=AES_KEY, base_url=fake.base_url
        ),
        app.state.settings.resolved_secret_key(),
    )
    db.commit()
    client.cookies.set("lang", "en")
    csrf = console_login(client, f"admin@{tenant.slug}.test")
    first = client.post("/wecom/sync", data={"csrf_token": csrf})
    assert 'data-sync-status="succeeded"' in first.text, first.text
    everyone = {(f"wm_{u}", u) for u in MEMBERS} | {("wm_shared", "alice"), ("wm_shared", "bob")}
    assert active_follows(db, tenant.org_id) == everyone

    # The licences lapse; meanwhile alice's customer really deleted her.
    fake.post("config", {"unlicensed_members": UNLICENSED})
    fake.post("contacts/wm_alice/delete", {"userid": "alice", "by": "customer"})
    fake.http.delete("/_control/calls")
    second = client.post("/wecom/sync", data={"csrf_token": csrf})
    assert 'data-sync-status="succeeded"' in second.text, second.text
    db.expire_all()
    # Only the relation WeCom really ended is ended; the unlicensed members' ones are still active.
    assert active_follows(db, tenant.org_id) == everyone - {("wm_alice", "alice")}
    # bob's tag on the shared customer was not listed this time, and is kept.
    high = db.scalar(select(Tag.id).where(Tag.org_id == tenant.org_id, Tag.external_id == tag))
    shared = customer_of(db, tenant.org_id, "wm_shared")
    assert db.scalar(
        select(CustomerTag.tag_id).where(CustomerTag.customer_id == shared, CustomerTag.tag_id == high)
    )
    # The fake behaved like WeCom: a mixed call listed fail_info, an all-unlicensed call answered 701008.
    errcodes = [c["errcode"] for c in fake.calls("externalcontact/batch/get_by_user")]
    assert errcodes.count(701008) == 1 and errcodes.count(0) == 2
    run = db.scalar(select(WeComSyncRun).where(WeComSyncRun.org_id == tenant.org_id))
    assert run is not None and run.report["unlicensed_members"] == UNLICENSED
    assert (
        "WeCom did not list the customers of 3 members: they have no interoperability licence" in second.text
    )
    assert "bob, carol, dave" in second.text
    client.cookies.set("lang", "zh_CN")
    assert "尚未开通互通账号" in client.get("/wecom/status").text
