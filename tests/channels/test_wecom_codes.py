"""A channel code issued on WeCom (the fake WeCom server over real HTTP): the pool's members are put
on the contact_way, and a scan brings a customer whose State finds the code again."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.orm import Session
from wechatpy.session.memorystorage import MemoryStorage

from siyu.accounts.models import Account, AccountKind, AccountStatus
from siyu.channels import service
from siyu.channels.models import CodeCarrier
from siyu.channels.schemas import CodeIn, MemberIn, PoolIn
from siyu.integrations.wecom.client import WeComClient
from siyu.integrations.wecom.fake_server import FakeWeComServer
from siyu.kit.errors import Invalid

SECRET = "fake-customer-contact-secret"


@pytest.fixture(scope="module")
def wecom_server() -> Iterator[FakeWeComServer]:
    server = FakeWeComServer().start()
    yield server
    server.stop()


def test_wecom_code_routes_over_pool_members(db: Session, tenant, wecom_server: FakeWeComServer) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=wecom_server.base_url, timeout=30.0) as control:
        corp_id = control.post("/_control/reset", json={}).json()["corp_id"]
        control.post("/_control/members", json={"members": [{"userid": "alice"}, {"userid": "bob"}]})
        client = WeComClient(
            corp_id, SECRET, base_url=wecom_server.base_url, session=MemoryStorage(), sleep=lambda _s: None
        )
        accts = []
        for userid, status in (
            ("alice", AccountStatus.active),
            ("bob", AccountStatus.active),
            ("carol", AccountStatus.resigned),
        ):
            a = Account(
                org_id=tenant.org_id,
                kind=AccountKind.wecom_member,
                external_id=userid,
                name=userid,
                status=status,
            )
            db.add(a)
            db.flush()
            accts.append(a)
        pool = service.create_pool(
            db, tenant.org_id, PoolIn(name="wecom", members=[MemberIn(account_id=a.id) for a in accts])
        )
        code = service.create_code(
            db,
            tenant.org_id,
            CodeIn(
                name="抖音直播",
                state="douyin_live_0612",
                channel="douyin",
                carrier=CodeCarrier.wecom,
                pool_id=pool.id,
            ),
            client,
        )
        assert code.config_id and code.qr_url
        [call] = control.get("/_control/calls", params={"api": "externalcontact/add_contact_way"}).json()[
            "calls"
        ]
        assert call["sizes"]["user"] == 2  # the resigned member is left off
        scanned = {
            control.post("/_control/scan", json={"config_id": code.config_id, "name": f"c{i}"}).json()[
                "userid"
            ]
            for i in range(4)
        }
        assert scanned == {"alice", "bob"}
        found = service.code_for_state(db, tenant.org_id, "douyin_live_0612")
        assert found is not None and found.id == code.id
        with pytest.raises(Invalid) as too_long:
            service.create_code(
                db,
                tenant.org_id,
                CodeIn.model_construct(
                    name="x",
                    state="s" * 31,
                    channel="douyin",
                    carrier=CodeCarrier.wecom,
                    pool_id=pool.id,
                    tag_ids=[],
                    campaign="",
                    content_item="",
                    remark_template="",
                    welcome_message="",
                    cost_fen=0,
                ),
                client,
            )
        assert too_long.value.field == "state"
