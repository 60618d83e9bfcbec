"""Shared builders of the personal-data tests: a customer with data in every store that can hold it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu.accounts.models import AccountKind
from siyu.accounts.schemas import AccountIn
from siyu.accounts.service import create_account
from siyu.customers import customer_tagging, identities, tagging
from siyu.customers.models import IdentityKind
from siyu.customers.schemas import TagGroupIn
from siyu.events.models import OutboxItem
from siyu.groups.models import CustomerGroup, GroupMember, MemberKind
from siyu.leads.models import Comment, Lead, Platform, WebhookReceipt
from siyu.wecom.models import InboxItem, WelcomeSend

NAME = "张秘密"
MOBILE = "13912345678"
EXTERNAL = "wmSecretExternal01"
OPEN_ID = "dyOpenSecret01"
COMMENT_TEXT = "我想买，联系我 13912345678"
NOTE_TEXT = "客户说手机 13912345678 白天打"
T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class Person:
    """The customer built by ``person`` and the ids of what points at them."""

    customer_id: int
    account_id: int
    order_total: int


@pytest.fixture
def person(client: TestClient, db: Session, tenant) -> Person:  # type: ignore[no-untyped-def]
    """A customer followed by the operator's account, with identities, a tag, a note, an order, a consent,
    a Douyin comment and its lead, a group membership, a raw WeCom callback and Douyin receipt."""
    acc = create_account(
        db,
        tenant.org_id,
        AccountIn(
            kind=AccountKind.wecom_member, external_id="op1", name="op1", operator_id=tenant.operator_id
        ),
    )
    db.commit()
    created = client.post(
        f"/api/v1/customers?account_id={acc.id}",
        json={
            "name": NAME,
            "mobile": MOBILE,
            "region": "杭州",
            "source": "douyin",
            "consent_marketing": True,
        },
        headers=tenant.auth("admin"),
    )
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    identities.add_identity(db, tenant.org_id, cid, IdentityKind.wecom_external_userid, EXTERNAL)
    identities.add_identity(db, tenant.org_id, cid, IdentityKind.douyin_open_id, OPEN_ID)
    _group, tags = tagging.create_tag_group(db, tenant.org_id, TagGroupIn(name="意向", tags=["高意向"]))
    customer_tagging.change_tags(db, tenant.org_id, cid, add=[tags[0].id], origin="console")
    db.commit()
    remark = client.patch(
        f"/api/v1/customers/{cid}", json={"remark": f"{NAME}{MOBILE}"}, headers=tenant.auth("admin")
    )
    assert remark.status_code == 200, remark.text  # remark_changed carries name and mobile into the log
    note = client.post(
        f"/api/v1/customers/{cid}/notes", json={"body": NOTE_TEXT}, headers=tenant.auth("admin")
    )
    assert note.status_code == 201, note.text
    order = client.post(
        "/api/v1/orders",
        json={
            "customer_id": cid,
            "platform": "taobao",
            "external_id": "TB-1",
            "amount_fen": 12_900,
            "paid_at": T0.isoformat(),
            "items": [{"name": "面霜", "quantity": 1, "unit_price_fen": 12_900}],
        },
        headers=tenant.auth("admin"),
    )
    assert order.status_code == 201, order.text
    comment = Comment(
        org_id=tenant.org_id,
        platform=Platform.douyin,
        external_id="cmt-secret-1",
        item_title="新品",
        commenter_id=OPEN_ID,
        commenter_name=NAME,
        content=COMMENT_TEXT,
        commented_at=T0,
        intent="purchase",
        confidence=0.9,
        customer_id=cid,
    )
    db.add(comment)
    db.flush()
    db.add(
        Lead(
            org_id=tenant.org_id,
            comment_id=comment.id,
            customer_id=cid,
            intent="purchase",
            reply_due_at=T0,
            reply_text=f"@{NAME} 加我",
        )
    )
    db.add(
        WebhookReceipt(
            org_id=tenant.org_id,
            platform="douyin",
            msg_id="m1",
            event="item_comment_reply",
            body={"from_user_id": OPEN_ID, "content": {"comment_id": "cmt-secret-1", "text": "我想买"}},
        )
    )
    db.add(
        InboxItem(
            org_id=tenant.org_id,
            source="wecom",
            external_key="k1",
            kind="add_external_contact",
            payload={"ExternalUserID": EXTERNAL, "UserID": "op1"},
        )
    )
    db.add(
        InboxItem(
            org_id=tenant.org_id,
            source="wecom",
            external_key="k2",
            kind="change_external_contact",
            payload={"ExternalUserID": "someone-else"},
        )
    )
    # A write-back already done still holds the remark it wrote.
    db.add(
        OutboxItem(
            org_id=tenant.org_id,
            handler="customers.writeback.wecom",
            dedupe_key="done-remark",
            event_type="remark_changed",
            customer_id=cid,
            payload={"remark": f"{NAME}{MOBILE}"},
            status="done",
        )
    )
    db.add(WelcomeSend(org_id=tenant.org_id, welcome_code="wc1", external_userid=EXTERNAL, userid="op1"))
    group = CustomerGroup(org_id=tenant.org_id, chat_id="chat1", name="福利群")
    db.add(group)
    db.flush()
    db.add(
        GroupMember(
            org_id=tenant.org_id,
            group_id=group.id,
            member_userid=EXTERNAL,
            kind=MemberKind.customer,
            customer_id=cid,
            joined_at=T0,
        )
    )
    db.commit()
    return Person(customer_id=cid, account_id=acc.id, order_total=12_900)
