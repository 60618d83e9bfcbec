"""The whole loop through real paths: a Douyin comment, a reply with a WeCom channel code, the scan that
WeCom reports by callback, write-back to WeCom, an order, and the funnel that counts the customer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.accounts.models import Account, AccountKind
from siyu.channels import service as channels
from siyu.channels.models import CodeCarrier
from siyu.channels.schemas import CodeIn, MemberIn, PoolIn
from siyu.customers import access, tagging
from siyu.customers.models import Customer, CustomerIdentity, IdentityKind, Stage
from siyu.customers.schemas import TagGroupIn
from siyu.events.outbox import drain
from siyu.integrations.douyin.fake_server import FakeDouyinServer
from siyu.leads import service as leads
from siyu.wecom.credentials import client_for, load_plain
from siyu.worker.queue import sessions

from .conftest import Wired

SECRET_KEY = "test-secret-key"


def test_a_commenter_becomes_a_contacted_then_converted_customer_written_back_to_wecom(
    wired: Wired, db: Session, tenant: Any
) -> None:
    org = wired.org_id
    member = Account(org_id=org, kind=AccountKind.wecom_member, external_id="zhangsan", name="张三")
    db.add(member)
    db.flush()
    pool = channels.create_pool(db, org, PoolIn(name="抖音引流", members=[MemberIn(account_id=member.id)]))
    _group, [auto_tag] = tagging.create_tag_group(db, org, TagGroupIn(name="渠道", tags=["抖音引流"]))
    code = channels.create_code(
        db,
        org,
        CodeIn(
            name="抖音评论区",
            state="dy_comment_wc",
            channel="douyin_comment",
            carrier=CodeCarrier.wecom,
            pool_id=pool.id,
            tag_ids=[auto_tag.id],
        ),
        client_for(load_plain(db, org, SECRET_KEY)),
    )
    db.commit()

    with FakeDouyinServer() as douyin:
        st = douyin.state
        leads.configure_douyin(
            db,
            org,
            SECRET_KEY,
            client_key=st.client_key,
            client_secret=st.client_secret,
            account_open_id=st.account_open_id,
            access_token=st.access_token,
            api_base_url=douyin.base_url,
        )
        db.commit()
        st.webhook_url = f"{wired.app_url}/hooks/douyin/{wired.slug}"
        with (
            httpx.Client(base_url=wired.app_url, headers=tenant.auth()) as api,
            httpx.Client(base_url=douyin.base_url) as control,
        ):
            # 1. A comment asking for material arrives through Douyin's signed webhook.
            sent = control.post("/_control/comment", json={"content": "求资料", "item_id": "@v7"}).json()
            assert sent["status"] == 200, sent
            [lead] = api.get("/api/v1/leads").json()
            # 2. The operator replies with the WeCom channel code; Douyin receives the link once.
            replied = api.post(f"/api/v1/leads/{lead['id']}/reply", json={"code_id": code.id})
            assert replied.status_code == 200, replied.text
            [reply] = control.get("/_control/replies").json()
            assert replied.json()["code_url"] in reply["content"] and "{" not in reply["content"]

            # 3. The commenter scans the code: WeCom adds them to the routed member and calls siyu back.
            scan = wired.fake.post("scan", {"config_id": code.config_id, "name": "小美"})
            assert scan["delivery"]["status"] == 200, scan
            db.expire_all()
            holder = db.scalar(
                select(CustomerIdentity.customer_id).where(
                    CustomerIdentity.org_id == org,
                    CustomerIdentity.kind == IdentityKind.wecom_external_userid,
                    CustomerIdentity.value == scan["external_userid"],
                )
            )
            assert holder is not None
            customer = access.live_customer(db, org, holder)
            cid = customer.id
            shown = api.get(f"/api/v1/customers/{cid}").json()
            timeline = api.get(f"/api/v1/customers/{cid}/timeline?limit=200").json()["items"]
            tags = {t["name"] for t in api.get(f"/api/v1/customers/{cid}/tags").json()}

            # Source, intent, tags and a remark in words; stage contacted; every step on the timeline.
            assert shown["source"] == "douyin_comment" and shown["intent"] == "求资料"
            assert tags == {"求资料", "抖音引流"}
            assert shown["remark"] == "小美+抖音评论+求资料"
            assert shown["stage"] == "contacted"
            steps = [item["type"] for item in reversed(timeline)]
            for step in (
                "lead_commented",
                "lead_replied",
                "code_scanned",
                "lead_converted",
                "follow_started",
                "tag_added",
                "remark_changed",
                "stage_changed",
            ):
                assert step in steps, (step, steps)
            # (WeCom dates the add in whole seconds, so within a second it may sort before the reply.)
            assert steps.index("lead_commented") < steps.index("code_scanned")

            # 4. Write-back: WeCom shows the tags and the remark siyu gave the contact.
            drain(sessions())
            seen = wired.fake.http.get(f"/_control/contacts/{scan['external_userid']}").json()
            [follow] = [f for f in seen["follow"] if f["userid"] == "zhangsan"]
            assert follow["remark"] == "小美+抖音评论+求资料"
            assert {"求资料", "抖音引流"} <= set(follow["tags"])

            # 5. A first paid order moves them to converted, and the funnel counts them.
            order = api.post(
                "/api/v1/orders",
                json={
                    "platform": "douyin",
                    "external_id": "DY-1",
                    "customer_id": cid,
                    "amount_fen": 9_900,
                    "paid_at": datetime.now(UTC).isoformat(),
                },
            )
            assert order.status_code == 201, order.text
            assert api.get(f"/api/v1/customers/{cid}").json()["stage"] == "converted"
            funnel = api.post(
                "/api/v1/analytics/funnel",
                json={
                    "steps": [
                        {"event_type": "lead_commented"},
                        {"event_type": "code_scanned"},
                        {"event_type": "order_paid"},
                    ],
                    "window_seconds": 86_400,
                },
            )
            assert funnel.status_code == 200, funnel.text
            counts = [step["count"] for step in funnel.json()[0]["steps"]]
            assert counts == [1, 1, 1], funnel.json()
    db.expire_all()
    survivor = db.get(Customer, cid)
    assert survivor is not None and survivor.stage == Stage.converted
