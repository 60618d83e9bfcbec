"""A WeCom add_external_contact callback with the State of one of siyu's codes, from the fake WeCom server
over HTTP: the one add-through-a-code use case gives the source, auto-tags and remark in words."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.accounts.models import Account, AccountKind
from siyu.channels import service as channels
from siyu.channels.models import ChannelAdd, CodeCarrier
from siyu.channels.schemas import CodeIn, MemberIn, PoolIn
from siyu.customers import access, tagging
from siyu.customers.models import CustomerTag, Tag
from siyu.customers.schemas import TagGroupIn
from siyu.events.models import Event
from siyu.wecom.credentials import client_for, load_plain

from .conftest import Wired, customer_of


def test_a_callback_add_through_a_code_tags_and_remarks_in_words(wired: Wired, db: Session) -> None:
    org = wired.org_id
    account = Account(org_id=org, kind=AccountKind.wecom_member, external_id="zhangsan", name="张三")
    db.add(account)
    db.flush()
    pool = channels.create_pool(db, org, PoolIn(name="包裹卡", members=[MemberIn(account_id=account.id)]))
    _group, [tag] = tagging.create_tag_group(db, org, TagGroupIn(name="渠道", tags=["包裹卡客户"]))
    code = channels.create_code(
        db,
        org,
        CodeIn(
            name="淘宝包裹卡3月",
            state="tb_card_wc",
            channel="taobao_parcel_card",
            carrier=CodeCarrier.wecom,
            pool_id=pool.id,
            tag_ids=[tag.id],
            welcome_message="感谢购买！回复 1 领取返现",
        ),
        client_for(load_plain(db, org, "test-secret-key")),
    )
    db.commit()

    scan = wired.fake.post("scan", {"config_id": code.config_id, "name": "淘宝买家小李"})
    assert scan["delivery"]["status"] == 200, scan

    db.expire_all()
    customer = access.live_customer(db, org, customer_of(db, org, scan["external_userid"]))
    assert (customer.source, customer.source_detail) == ("taobao_parcel_card", "淘宝包裹卡3月")
    assert customer.remark == "淘宝买家小李+淘宝包裹卡"  # the source in words, not tb_card_wc
    tags = set(db.scalars(select(Tag.name).join(CustomerTag).where(CustomerTag.customer_id == customer.id)))
    assert tags == {"包裹卡客户"}
    assert db.scalar(select(ChannelAdd.code_id).where(ChannelAdd.customer_id == customer.id)) == code.id
    events = {e.type: e for e in db.scalars(select(Event).where(Event.customer_id == customer.id))}
    scanned = events["code_scanned"]
    assert scanned.properties["code_id"] == code.id and scanned.properties["state"] == "tb_card_wc"
    assert scanned.properties["origin"] == "wecom" and scanned.account_id == account.id
    # The auto-tag is siyu's own rule, not news from WeCom: write-back may send it there.
    assert events["tag_added"].properties["origin"] == "rule"
    assert [w["text"] for w in wired.fake.server.state.welcome_messages] == ["感谢购买！回复 1 领取返现"]
