"""A mass message to customer groups leaves one event per customer member when a group's send settles:
message_sent for the customers in the group when WeCom posted it there, message_failed (with the reason)
for those of a group it never reached; each marked with the group, recorded once however often the
results are read back. Sent through the fake WeCom server."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from tests.campaigns.test_group_messages import w  # noqa: F401  (the fixture: alice's and bob's groups)
from tests.web.settings_fixtures import console_login
from tests.wecom.conftest import Control, customer_of

from siyu.campaigns import group_messages
from siyu.campaigns import service as campaigns
from siyu.campaigns.models import MassCapPolicy, MassGroupSend
from siyu.events.models import Event
from siyu.integrations.wecom.client import WeComClient
from siyu.kit.db import make_sessionmaker, transaction
from siyu.wecom.sync import full_sync

pytestmark = pytest.mark.own_members  # these tests seed their own members

DISMISSED = "WeCom: the group was dismissed or is no longer owned by the sender"


def _message_events(engine: Engine, org: int) -> list[tuple[str, int, dict[str, Any]]]:
    with make_sessionmaker(engine)() as db:
        rows = [
            (e.type, e.customer_id, e.properties)
            for e in db.scalars(
                select(Event).where(Event.org_id == org, Event.type.in_(["message_sent", "message_failed"]))
            )
        ]
    return sorted(rows, key=lambda r: (r[0], r[1], r[2].get("group_id", 0)))


def _msgids(engine: Engine, message_id: int) -> dict[str, str]:
    with make_sessionmaker(engine)() as db:
        rows = db.execute(
            select(MassGroupSend.chat_id, MassGroupSend.msgid).where(MassGroupSend.message_id == message_id)
        )
        return {str(chat_id): str(msgid) for chat_id, msgid in rows}


def test_each_customer_member_leaves_one_event_when_the_groups_send_settles(
    client: TestClient,
    engine: Engine,
    tenant: Any,
    fake: Control,
    wecom: WeComClient,
    w: dict[str, int],  # noqa: F811
) -> None:
    org = tenant.org_id
    factory = make_sessionmaker(engine)
    fake.post(
        "contacts", {"contacts": [{"external_userid": "wm_c", "name": "c", "follow": [{"userid": "alice"}]}]}
    )
    with transaction(factory) as db:
        full_sync(db, org, wecom)
        a, b, c = (customer_of(db, org, e) for e in ("wm_a", "wm_b", "wm_c"))
        mid = group_messages.create_group_message(
            db, org, text="周末活动", group_ids=[w["wr_a1"], w["wr_a2"], w["wr_b1"]]
        ).id
    campaigns.submit(factory, org, mid, wecom)
    msgids = _msgids(engine, mid)
    fake.post(f"mass/{msgids['wr_a1']}/send", {"userid": "alice"})
    assert _message_events(engine, org) == []  # nothing is read back yet
    # After alice's post: wm_c joins her first group, wm_a leaves her second, bob's group is dismissed, and a
    # sync tells siyu all of it before the results are read.
    fake.post("clock", {"advance": 60})
    fake.post("groups/wr_a1/join", {"userids": ["wm_c"]})
    fake.post("groups/wr_a2/quit", {"userids": ["wm_a"]})
    fake.post("groups/wr_b1/dismiss")
    with transaction(factory) as db:
        full_sync(db, org, wecom)
    fake.post(f"mass/{msgids['wr_b1']}/send", {"userid": "bob"})
    for _ in range(2):  # read back twice (as the hourly task does): recorded once
        with transaction(factory) as db:
            campaigns.refresh_results(db, org, mid, wecom)

    def via(chat: str, owner: str) -> dict[str, Any]:
        return {"campaign_id": mid, "account_id": w[owner], "group_id": w[chat], "chat_id": chat}

    # wm_a was in both of alice's groups when she posted (one event for each); wm_c joined after; wm_b's
    # group was gone when bob confirmed. The owners are staff, not customers.
    assert _message_events(engine, org) == [
        ("message_failed", b, {**via("wr_b1", "bob"), "reason": DISMISSED}),
        ("message_sent", a, via("wr_a1", "alice")),
        ("message_sent", a, via("wr_a2", "alice")),
    ]
    assert c not in {cid for _, cid, _ in _message_events(engine, org)}

    # The customer's timeline says it in words: through which group, which groups they joined and left.
    console_login(client, f"admin@{tenant.slug}.test")
    page = client.get(f"/customers/{a}")
    assert page.status_code == 200
    for words in (
        "消息已送达",
        "经客户群「训练营一期」",
        "经客户群「训练营二期」",
        "加入社群",
        "客户群「训练营二期」",
        "退出社群",
        "同步时发现已不在群中",
        "成员邀请入群",
    ):
        assert words in page.text, words
    for raw in ("not_in_snapshot", "group_id", "chat_id", "campaign_id", "invited"):
        assert raw not in page.text, raw


def test_a_group_left_out_for_its_cap_fails_for_its_customers(
    engine: Engine,
    tenant: Any,
    fake: Control,
    wecom: WeComClient,
    w: dict[str, int],  # noqa: F811
) -> None:
    org = tenant.org_id
    factory = make_sessionmaker(engine)
    with transaction(factory) as db:
        campaigns.set_cap_policy(db, org, MassCapPolicy.day_1)
        first = group_messages.create_group_message(db, org, text="一", group_ids=[w["wr_b1"]]).id
        second = group_messages.create_group_message(db, org, text="二", group_ids=[w["wr_b1"]]).id
        b = customer_of(db, org, "wm_b")
    campaigns.submit(factory, org, first, wecom)
    assert campaigns.submit(factory, org, second, wecom).left_out[0].reason == "cap_reached"
    events = _message_events(engine, org)
    assert [(t, cid, p["campaign_id"], p["group_id"], p.get("chat_id")) for t, cid, p in events] == [
        ("message_failed", b, second, w["wr_b1"], None)
    ]
    assert "already received 1 mass messages today" in events[0][2]["reason"]
